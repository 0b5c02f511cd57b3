//! One archived change: every column of `pgtrail.changes`, plus what a leaf
//! of the seal log is computed from (the change's context number, table id,
//! key before the change, recorded changed fields and the rest of its
//! transaction record), read from the database (`copy`) or from a Parquet
//! file.

use crate::digest::RowDigest;

/// The columns of one change, in the order of the Parquet schema.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ArchivedChange {
    pub id: i64,
    pub txid: i64,
    /// Microseconds since 1970-01-01 UTC.
    pub changed_at: i64,
    pub table_schema: String,
    pub table_name: String,
    /// `INSERT`, `UPDATE`, `DELETE` or `TRUNCATE`.
    pub op: String,
    /// JSON text, as PostgreSQL prints jsonb.
    pub pk: Option<String>,
    pub old_values: Option<String>,
    pub new_values: Option<String>,
    /// As `pgtrail.changes` shows them (UPDATE only).
    pub changed_fields: Option<Vec<String>>,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_type: Option<String>,
    pub reason: Option<String>,
    pub context: Option<String>,
    pub db_user: Option<String>,
    pub application_name: Option<String>,
    pub client_addr: Option<String>,
    pub tx_started_at: Option<i64>,
    // What the leaf needs besides.
    pub ctx: i16,
    pub table_id: i32,
    pub old_pk: Option<String>,
    /// The stored `changed_fields` (PostgreSQL's text of a text[]; NULL
    /// with diff images).
    pub changed_fields_recorded: Option<String>,
    pub tx_recorded_at: Option<i64>,
    pub db_role: Option<String>,
    pub client_port: Option<i32>,
    /// NULL when the change has no transaction record.
    pub backend_pid: Option<i32>,
}

impl ArchivedChange {
    /// The one-letter op the trail stores (`I`, `U`, `D`, `T`), as leaves use it.
    pub fn op_code(&self) -> &'static str {
        match self.op.as_str() {
            "INSERT" => "I",
            "UPDATE" => "U",
            "DELETE" => "D",
            "TRUNCATE" => "T",
            _ => "?",
        }
    }

    /// The change's transaction record as the seal's transaction digest
    /// reads it (txid, ctx, started and recorded in microseconds, actor id,
    /// name, type, reason, context, db user, db role, application name,
    /// client address, client port, backend pid), or None without one.
    pub fn transaction_record(&self) -> Option<[Option<String>; 15]> {
        let pid = self.backend_pid?;
        Some([
            Some(self.txid.to_string()),
            Some(self.ctx.to_string()),
            self.tx_started_at.map(|v| v.to_string()),
            self.tx_recorded_at.map(|v| v.to_string()),
            self.actor_id.clone(),
            self.actor_name.clone(),
            self.actor_type.clone(),
            self.reason.clone(),
            self.context.clone(),
            self.db_user.clone(),
            self.db_role.clone(),
            self.application_name.clone(),
            self.client_addr.clone(),
            self.client_port.map(|v| v.to_string()),
            Some(pid.to_string()),
        ])
    }

    /// Feeds every column into `hasher`, each as `u32(len) || bytes` or
    /// `0xFFFFFFFF` for NULL: equal rows give equal digests.
    pub fn digest_into(&self, hasher: &mut impl RowDigest) {
        fn put(hasher: &mut impl RowDigest, value: Option<&[u8]>) {
            match value {
                Some(bytes) => {
                    hasher.put(&(bytes.len() as u32).to_be_bytes());
                    hasher.put(bytes);
                }
                None => hasher.put(&u32::MAX.to_be_bytes()),
            }
        }
        fn num(hasher: &mut impl RowDigest, value: Option<i64>) {
            put(
                hasher,
                value.map(i64::to_be_bytes).as_ref().map(<[u8; 8]>::as_slice),
            );
        }
        fn text(hasher: &mut impl RowDigest, value: &Option<String>) {
            put(hasher, value.as_deref().map(str::as_bytes));
        }
        num(hasher, Some(self.id));
        num(hasher, Some(self.txid));
        num(hasher, Some(self.changed_at));
        put(hasher, Some(self.table_schema.as_bytes()));
        put(hasher, Some(self.table_name.as_bytes()));
        put(hasher, Some(self.op.as_bytes()));
        text(hasher, &self.pk);
        text(hasher, &self.old_values);
        text(hasher, &self.new_values);
        match &self.changed_fields {
            // The items joined by U+001F, without building the joined string.
            Some(fields) => {
                let len = fields.iter().map(String::len).sum::<usize>() + fields.len().saturating_sub(1);
                hasher.put(&(len as u32).to_be_bytes());
                for (i, field) in fields.iter().enumerate() {
                    if i > 0 {
                        hasher.put(&[0x1f]);
                    }
                    hasher.put(field.as_bytes());
                }
            }
            None => put(hasher, None),
        }
        text(hasher, &self.actor_id);
        text(hasher, &self.actor_name);
        text(hasher, &self.actor_type);
        text(hasher, &self.reason);
        text(hasher, &self.context);
        text(hasher, &self.db_user);
        text(hasher, &self.application_name);
        text(hasher, &self.client_addr);
        num(hasher, self.tx_started_at);
        num(hasher, Some(i64::from(self.ctx)));
        num(hasher, Some(i64::from(self.table_id)));
        text(hasher, &self.old_pk);
        text(hasher, &self.changed_fields_recorded);
        num(hasher, self.tx_recorded_at);
        text(hasher, &self.db_role);
        num(hasher, self.client_port.map(i64::from));
        num(hasher, self.backend_pid.map(i64::from));
    }
}
