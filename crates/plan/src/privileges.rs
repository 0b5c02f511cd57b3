//! What an install by a role that is not a superuser lacks, what that
//! means, and how to fix it: no owner role (the installing role owns the
//! trail and can edit it), no reader role, no DDL watch (capture can be
//! switched off unseen). `apply`, `plan` and `sql` print it; `check`
//! reports the first and the last as problems unless `[install]` in the
//! config accepts them.

use std::fmt;

use tokio_postgres::GenericClient;

use crate::PlanError;

/// What the connected role may do, and what the database has.
#[derive(Debug, Clone)]
pub struct Privileges {
    /// The connected role (`current_user`): the installer.
    pub installer: String,
    pub database: String,
    /// This database's owner and reader roles (`pgtrail.role_name`).
    pub owner_role: String,
    pub reader_role: String,
    pub superuser: bool,
    /// Superuser or CREATEROLE.
    pub can_create_roles: bool,
    /// Superuser, or a member of `rds_superuser` (Amazon RDS and Aurora).
    pub can_create_event_triggers: bool,
    pub owner_role_exists: bool,
    pub reader_role_exists: bool,
    /// May act as the owner role (SET ROLE from PostgreSQL 16 on; membership before).
    pub member_of_owner_role: bool,
    /// The owner of the schema pgtrail, when installed.
    pub trail_owner: Option<String>,
    /// Both event triggers of the DDL watch exist and are enabled.
    pub ddl_watch: bool,
}

/// One thing an install lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shortfall {
    /// The trail belongs to `owner` (a role that can log in), not to the owner role.
    InstallerOwnsTrail { owner: String, owner_role: String },
    /// The reader role does not exist.
    NoReaderRole { reader_role: String },
    /// The event triggers of the DDL watch are missing.
    NoDdlWatch,
}

impl Privileges {
    /// Reads the connected role's rights and what the database has.
    pub async fn load(client: &impl GenericClient) -> Result<Privileges, PlanError> {
        let row = client
            .query_one(
                "SELECT current_user::text, current_database()::text, left(md5(current_database()), 8),
                        r.rolsuper, r.rolsuper OR r.rolcreaterole,
                        r.rolsuper OR coalesce(pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = 'rds_superuser'), 'MEMBER'), false),
                        (SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'pgtrail'),
                        (SELECT count(*) = 2 FROM pg_event_trigger
                         WHERE evtname IN ('pgtrail_ddl_watch', 'pgtrail_drop_watch') AND evtenabled <> 'D')
                 FROM pg_roles AS r WHERE r.rolname = current_user",
                &[],
            )
            .await
            .map_err(PlanError::database("reading the installing role's rights"))?;
        let database: String = row.get(1);
        let hash: String = row.get(2);
        let owner_role = role_name(&database, &hash, "owner");
        let reader_role = role_name(&database, &hash, "reader");
        let roles = client
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1),
                        EXISTS (SELECT FROM pg_roles WHERE rolname = $2),
                        coalesce(pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = $1),
                                 CASE WHEN current_setting('server_version_num')::int >= 160000 THEN 'SET' ELSE 'MEMBER' END), false)",
                &[&owner_role, &reader_role],
            )
            .await
            .map_err(PlanError::database("reading pgtrail's roles"))?;
        Ok(Privileges {
            installer: row.get(0),
            database,
            owner_role,
            reader_role,
            superuser: row.get(3),
            can_create_roles: row.get(4),
            can_create_event_triggers: row.get(5),
            trail_owner: row.get(6),
            ddl_watch: row.get(7),
            owner_role_exists: roles.get(0),
            reader_role_exists: roles.get(1),
            member_of_owner_role: roles.get(2),
        })
    }

    /// What the installed trail lacks (`check`, and `apply` once done).
    pub fn installed_shortfalls(&self) -> Vec<Shortfall> {
        let mut out = Vec::new();
        if let Some(owner) = &self.trail_owner
            && *owner != self.owner_role
        {
            out.push(Shortfall::InstallerOwnsTrail {
                owner: owner.clone(),
                owner_role: self.owner_role.clone(),
            });
        }
        if self.trail_owner.is_some() && !self.reader_role_exists {
            out.push(Shortfall::NoReaderRole {
                reader_role: self.reader_role.clone(),
            });
        }
        if self.trail_owner.is_some() && !self.ddl_watch {
            out.push(Shortfall::NoDdlWatch);
        }
        out
    }

    /// What an install run by the connected role would lack (`plan`, `sql`),
    /// as far as its attributes tell.
    pub fn predicted_shortfalls(&self) -> Vec<Shortfall> {
        let mut out = Vec::new();
        let owner_ok = self.can_create_roles || (self.owner_role_exists && self.member_of_owner_role);
        if !owner_ok {
            out.push(Shortfall::InstallerOwnsTrail {
                owner: self.installer.clone(),
                owner_role: self.owner_role.clone(),
            });
        }
        if !self.reader_role_exists && !self.can_create_roles {
            out.push(Shortfall::NoReaderRole {
                reader_role: self.reader_role.clone(),
            });
        }
        if !self.ddl_watch && !self.can_create_event_triggers {
            out.push(Shortfall::NoDdlWatch);
        }
        out
    }
}

/// `pgtrail_<database>_<kind>`, or, when longer than 63 bytes, the
/// database's name cut and followed by the first 8 hex digits of its md5
/// (`hash`): the same rule as `pgtrail.role_name` in the database.
pub fn role_name(database: &str, hash: &str, kind: &str) -> String {
    let plain = format!("pgtrail_{database}_{kind}");
    if plain.len() <= 63 {
        return plain;
    }
    let mut cut = database.to_string();
    while format!("pgtrail_{cut}_{hash}_{kind}").len() > 63 {
        cut.pop();
    }
    format!("pgtrail_{cut}_{hash}_{kind}")
}

/// An identifier as SQL needs it.
fn ident(name: &str) -> String {
    pgtrail_capture::quote::ident(name)
}

impl Shortfall {
    /// A stable name for scripts (`--format json`).
    pub fn kind(&self) -> &'static str {
        match self {
            Shortfall::InstallerOwnsTrail { .. } => "installer_owns_trail",
            Shortfall::NoReaderRole { .. } => "no_reader_role",
            Shortfall::NoDdlWatch => "no_ddl_watch",
        }
    }

    /// Whether `[install]` in the config accepts it.
    pub fn accepted(&self, install: &pgtrail_config::Install) -> bool {
        match self {
            Shortfall::InstallerOwnsTrail { .. } => install.accept_installer_can_edit_trail,
            Shortfall::NoReaderRole { .. } => false,
            Shortfall::NoDdlWatch => install.accept_unseen_capture_gaps,
        }
    }

    /// The `[install]` setting that accepts it, if any.
    pub fn accept_setting(&self) -> Option<&'static str> {
        match self {
            Shortfall::InstallerOwnsTrail { .. } => Some("accept_installer_can_edit_trail = true"),
            Shortfall::NoReaderRole { .. } => None,
            Shortfall::NoDdlWatch => Some("accept_unseen_capture_gaps = true"),
        }
    }

    /// What it means, in a sentence.
    pub fn meaning(&self) -> String {
        match self {
            Shortfall::InstallerOwnsTrail { owner, .. } => format!(
                "{owner} owns the trail: it can switch the append-only guards off and edit or delete what was recorded \
                 (and so can an application that connects as {owner})"
            ),
            Shortfall::NoReaderRole { .. } => {
                "nobody can be given read-only access to the trail without owning it".to_string()
            }
            Shortfall::NoDdlWatch => "a table's owner can switch capture off (DISABLE TRIGGER, DROP TRIGGER, \
                 DROP TABLE) and on again without a trace: pgtrail.capture_gaps, check and verify cannot see it \
                 (reconcile still finds rows changed meanwhile in tables with a baseline)"
                .to_string(),
        }
    }

    /// How to fix it, for `installer` (several lines, SQL included).
    pub fn fix(&self, installer: &str) -> String {
        match self {
            Shortfall::InstallerOwnsTrail { owner_role, .. } => format!(
                "run `pgtrail apply` as a superuser or a role with CREATEROLE, or have one run\n    \
                 CREATE ROLE {role} NOLOGIN;\n    GRANT {role} TO {installer};\n  \
                 then run `pgtrail apply` again as {installer_plain}: it gives the trail to {role}",
                role = ident(owner_role),
                installer = ident(installer),
                installer_plain = installer
            ),
            Shortfall::NoReaderRole { reader_role } => format!(
                "have a superuser or a role with CREATEROLE run\n    CREATE ROLE {} NOLOGIN;\n  then run `pgtrail apply` again",
                ident(reader_role)
            ),
            Shortfall::NoDdlWatch => {
                "run `pgtrail apply` as a superuser (on Amazon RDS and Aurora, a member of \
                 rds_superuser; on Supabase, the postgres role): event triggers need it"
                    .to_string()
            }
        }
    }
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shortfall::InstallerOwnsTrail { owner, owner_role } => write!(
                f,
                "the trail belongs to {owner}, not to the role {}: {owner} can edit or delete what it records",
                ident(owner_role)
            ),
            Shortfall::NoReaderRole { reader_role } => {
                write!(
                    f,
                    "role {} does not exist: the trail has no read-only role",
                    ident(reader_role)
                )
            }
            Shortfall::NoDdlWatch => write!(
                f,
                "capture-gap detection is off (no event triggers pgtrail_ddl_watch and pgtrail_drop_watch): \
                 capture can be switched off without a trace"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_fit_in_63_bytes() {
        assert_eq!(role_name("shop", "0123abcd", "owner"), "pgtrail_shop_owner");
        let long = "a".repeat(60);
        let name = role_name(&long, "0123abcd", "reader");
        assert_eq!(name.len(), 63);
        assert!(
            name.starts_with("pgtrail_aaa") && name.ends_with("_0123abcd_reader"),
            "{name}"
        );
        // A multi-byte name is cut between characters.
        let name = role_name(&"é".repeat(40), "0123abcd", "owner");
        assert!(name.len() <= 63 && name.ends_with("_0123abcd_owner"), "{name}");
    }

    #[test]
    fn each_shortfall_says_what_it_means_and_how_to_fix_it() {
        let owned = Shortfall::InstallerOwnsTrail {
            owner: "migrator".into(),
            owner_role: "pgtrail_Shop_owner".into(),
        };
        assert!(owned.to_string().contains("belongs to migrator"));
        assert!(
            owned
                .fix("migrator")
                .contains("GRANT \"pgtrail_Shop_owner\" TO \"migrator\";")
        );
        let install = pgtrail_config::Install {
            accept_installer_can_edit_trail: true,
            accept_unseen_capture_gaps: false,
        };
        assert!(owned.accepted(&install));
        assert!(!Shortfall::NoDdlWatch.accepted(&install));
        assert!(Shortfall::NoDdlWatch.fix("x").contains("rds_superuser"));
    }
}
