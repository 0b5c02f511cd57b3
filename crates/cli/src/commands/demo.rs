//! `pgtrail demo`: pgtrail on a throwaway PostgreSQL, end to end.
//!
//! Starts a private cluster from the installed server binaries (no server
//! needed beforehand), creates a small app schema, installs pgtrail, lets a
//! support agent, a batch job, a migration and a careless script work, prints
//! what the trail answers, undoes the careless script with `pgtrail revert`
//! once the trail has shown who ran it, and proves the trail. Everything is
//! removed at the end unless `--keep` is given.

use std::process::ExitCode;

use anyhow::{Context, Result};
use pgtrail::config::Config;
use pgtrail_cluster::{Cluster, ClusterOptions};
use tokio_postgres::Client;

use crate::output;

const SCHEMA: &str = "
CREATE TABLE organizations (id int PRIMARY KEY, name text NOT NULL, siret text);
CREATE TABLE users (id int PRIMARY KEY, email text NOT NULL, name text, password_hash text,
                    updated_at timestamptz DEFAULT now());
CREATE TABLE memberships (user_id int REFERENCES users, organization_id int REFERENCES organizations,
                          role text, PRIMARY KEY (user_id, organization_id));
CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, status text, total numeric(10,2));
CREATE TABLE page_views (user_id int, path text);  -- no key at all
";

const CONFIG: &str = r#"
[capture]
ignore_columns = ["updated_at"]

[context]
actor_name = ["app.actor_email"]
actor_type = ["app.actor_type"]
migration = ["app.current_migration"]

[tables."public.users"]
redact_columns = ["password_hash"]
"#;

/// A day of work, one transaction per batch, each saying who acts.
const DAY: &[&str] = &[
    "BEGIN;
     SELECT pgtrail.set_context(actor_id => 'signup', actor_type => 'system', reason => 'self sign-up');
     INSERT INTO organizations VALUES (1, 'Acme', '13002526500013');
     INSERT INTO users (id, email, name, password_hash) VALUES (1, 'ann@acme.test', 'Ann', 'x1'),
                                                             (2, 'bob@acme.test', 'Bob', 'x2');
     INSERT INTO memberships VALUES (1, 1, 'admin'), (2, 1, 'member');
     COMMIT;",
    "BEGIN;
     SET LOCAL app.actor_email = 'support@acme.test';
     SET LOCAL app.actor_type = 'user';
     SELECT pgtrail.set_context(actor_id => '7', reason => 'ticket #4211: customer changed address',
                                extra => '{\"request_id\": \"req-81f2\"}');
     UPDATE users SET email = 'ann@newmail.test', updated_at = now() WHERE id = 1;
     UPDATE users SET password_hash = 'x3' WHERE id = 1;
     COMMIT;",
    "BEGIN;
     SELECT pgtrail.set_context(actor_id => 'billing-batch', actor_type => 'system');
     INSERT INTO orders (user_id, status, total) SELECT 1 + g % 2, 'open', g * 10 FROM generate_series(1, 6) g;
     INSERT INTO page_views VALUES (1, '/orders'), (2, '/orders');
     COMMIT;",
    "BEGIN;
     SET LOCAL app.current_migration = '0042_rename_acme';
     SET LOCAL app.actor_type = 'migration';
     UPDATE organizations SET name = 'Acme Inc' WHERE id = 1;
     COMMIT;",
    "BEGIN;
     SELECT pgtrail.set_context(actor_id => 'ops-script', actor_type => 'system', reason => 'close paid orders');
     UPDATE orders SET status = 'closed';  -- oops: no WHERE clause
     DELETE FROM memberships WHERE user_id = 2;
     COMMIT;",
];

pub async fn run(keep: bool, serve: bool) -> Result<ExitCode> {
    output::step("starting a throwaway PostgreSQL ...");
    let cluster = Cluster::start(ClusterOptions {
        keep,
        fast: true,
        ..ClusterOptions::default()
    })
    .context("starting the demo's throwaway PostgreSQL")?;
    let url = cluster.url("postgres");
    let target = pgtrail::connect::Target::parse(&url, "the demo cluster")?;
    let mut client = pgtrail::connect::connect(&target).await?;

    output::step("creating a small app: organizations, users, memberships, orders, page_views ...");
    client
        .batch_execute(SCHEMA)
        .await
        .context("creating the demo schema")?;
    output::step("installing pgtrail ...");
    let config = Config::parse(CONFIG, "demo pgtrail.toml")?;
    let report = pgtrail::plan::apply(&mut client, &config).await?;
    println!(
        "installed pgtrail {} and attached {} tables\n  (users.password_hash redacted, updated_at ignored)\n",
        report.version,
        report.tables.len()
    );
    output::step(
        "simulating a day: sign-up, support agent, billing batch, migration,\n  a careless script ...\n",
    );
    for batch in DAY {
        client.batch_execute(batch).await.context("simulating the day")?;
    }

    show(&client).await?;
    undo(&url).await?;
    prove(&mut client).await?;

    if serve {
        // The web UI on the demo's data, with a token made for this run.
        let token = pgtrail::serve::new_token().context("drawing a random token")?;
        let options = pgtrail::serve::Options {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: vec![pgtrail::serve::ServeToken {
                name: "demo".into(),
                role: pgtrail::serve::TokenRole::Reader,
                sha256: pgtrail::serve::hash_token(&token),
            }],
            ..pgtrail::serve::Options::default()
        };
        println!();
        super::serve::serve(options, super::serve::connector(target.clone()), Some(&token)).await?;
    }

    if keep {
        println!("\nthe demo database keeps running: {url}");
        println!("try: pgtrail history users 1 --database-url {url}");
        println!("     pgtrail log --database-url {url}");
        let pg_ctl = format!(
            "{} stop -D {} -m fast",
            cluster.bin_dir().join("pg_ctl").display(),
            cluster.data_dir().display()
        );
        // The server runs as the `postgres` user when the demo was started as root.
        let as_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
            status
                .lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        });
        match as_root {
            true => println!("stop it with: su postgres -s /bin/sh -c '{pg_ctl}'"),
            false => println!("stop it with: {pg_ctl}"),
        }
        println!("then remove {}", cluster.socket_dir().display());
    } else {
        drop(client);
        drop(cluster);
        output::step("\nthe throwaway PostgreSQL was stopped and removed (use --keep to keep it)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(client: &Client) -> Result<()> {
    let days: String = client
        .query_one(
            "SELECT string_agg(DISTINCT to_char(changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), ' and ')
             FROM pgtrail.changes",
            &[],
        )
        .await?
        .get(0);
    output::say(
        output::HEADER,
        &format!("Everything that happened on {days} (times in UTC), oldest first:"),
    );
    let rows = client
        .query(
            "SELECT c.id::text, to_char(c.changed_at AT TIME ZONE 'UTC', 'HH24:MI:SS'), c.op,
                    c.table_name || coalesce(' ' || (SELECT string_agg(e.key || '=' || (e.value #>> '{}'), ',')
                                                     FROM jsonb_each(c.pk) AS e), ''),
                    coalesce(array_to_string(c.changed_fields, ','), ''),
                    coalesce(c.actor_name, c.actor_id, c.context->>'migration', '?'), coalesce(c.reason, '')
             FROM pgtrail.changes AS c ORDER BY c.id",
            &[],
        )
        .await?;
    let mut table = vec![
        ["id", "time", "op", "row", "changed", "who", "why"]
            .map(String::from)
            .to_vec(),
    ];
    table.extend(
        rows.iter()
            .map(|r| (0..7).map(|i| r.get::<_, String>(i)).collect::<Vec<_>>()),
    );
    output::print_table(
        &table,
        true,
        |column, cell| match (column, cell) {
            (2, "INSERT") => output::GOOD,
            (2, "UPDATE") => output::WARN,
            (2, "DELETE" | "TRUNCATE") => output::BAD,
            (1, _) => output::DIM,
            _ => output::PLAIN,
        },
        Some(width()),
        &[0, 1, 2],
    );

    output::say(output::HEADER, "\nHistory of user 1, field by field:");
    let rows = client
        .query(
            "SELECT c.op, e.key, coalesce((c.old_values -> e.key)::text, ''), coalesce((c.new_values -> e.key)::text, ''),
                    coalesce(c.actor_name, c.actor_id, '?')
             FROM pgtrail.changes c
             CROSS JOIN LATERAL jsonb_each(coalesce(c.new_values, c.old_values)) e
             WHERE c.table_name = 'users' AND c.pk = '{\"id\": 1}'
             ORDER BY c.id, e.key",
            &[],
        )
        .await?;
    let mut table = vec![
        ["op", "field", "before", "after", "by"]
            .map(String::from)
            .to_vec(),
    ];
    table.extend(
        rows.iter()
            .map(|r| (0..5).map(|i| r.get::<_, String>(i)).collect::<Vec<_>>()),
    );
    output::print_table(
        &table,
        true,
        |column, _| match column {
            2 => output::BAD,
            3 => output::GOOD,
            _ => output::PLAIN,
        },
        Some(width()),
        &[0],
    );

    output::say(output::HEADER, "\nWho changed how much:");
    let rows = client
        .query(
            "SELECT coalesce(actor_name, actor_id, context->>'migration', '?'), coalesce(actor_type, ''),
                    count(*)::text, string_agg(DISTINCT table_name, ', ')
             FROM pgtrail.changes GROUP BY 1, 2 ORDER BY count(*) DESC, 1",
            &[],
        )
        .await?;
    let mut table = vec![["actor", "type", "changes", "tables"].map(String::from).to_vec()];
    table.extend(
        rows.iter()
            .map(|r| (0..4).map(|i| r.get::<_, String>(i)).collect::<Vec<_>>()),
    );
    output::print_table(&table, true, |_, _| output::PLAIN, Some(width()), &[]);
    Ok(())
}

/// `text` in lines of at most `width` characters, broken at spaces and
/// joined by `joint`.
fn wrap(text: &str, width: usize, joint: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines.join(joint)
}

/// The demo's tables fit the terminal, or 80 columns when it is not one.
fn width() -> usize {
    output::width_limit().unwrap_or(80)
}

/// Finds the careless script's transaction in the trail, then undoes it the
/// way a user would: `pgtrail revert --tx TXID` (this same binary), which
/// prints the plan and applies it.
async fn undo(url: &str) -> Result<()> {
    output::say(output::HEADER, "\nThe careless script, undone:");
    let target = pgtrail::connect::Target::parse(url, "the demo cluster")?;
    let client = pgtrail::connect::connect(&target).await?;
    let row = client
        .query_one(
            "SELECT txid, coalesce(actor_name, actor_id), coalesce(reason, ''), count(*)
             FROM pgtrail.changes WHERE actor_id = 'ops-script' GROUP BY 1, 2, 3",
            &[],
        )
        .await
        .context("finding the careless script in the trail")?;
    let (txid, who, why, changes): (i64, String, String, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    println!("  transaction {txid} by {who} (\"{why}\") changed {changes} rows;\n  reverting it:\n");
    let binary = std::env::current_exe().context("finding the pgtrail binary")?;
    let status = tokio::process::Command::new(binary)
        // The same width as the demo's own tables.
        .env("COLUMNS", width().to_string())
        .args([
            "revert",
            "--tx",
            &txid.to_string(),
            "--yes",
            "--as",
            "ops@acme.test",
        ])
        .args([
            "--reason",
            "the close-orders script had no WHERE clause",
            "--database-url",
            url,
        ])
        .status()
        .await
        .context("running pgtrail revert")?;
    if !status.success() {
        anyhow::bail!("pgtrail revert failed ({status})");
    }
    let rows = client
        .query(
            "SELECT c.id::text, c.op,
                    c.table_name || coalesce(' ' || (SELECT string_agg(e.key || '=' || (e.value #>> '{}'), ',')
                                                     FROM jsonb_each(c.pk) AS e), ''),
                    coalesce(array_to_string(c.changed_fields, ','), ''), c.actor_name, c.reason
             FROM pgtrail.changes AS c WHERE c.context ? 'revert' ORDER BY c.id",
            &[],
        )
        .await?;
    let why = rows.first().map(|r| r.get::<_, String>(5)).unwrap_or_default();
    output::say(
        output::HEADER,
        &format!("\n  and the trail recorded the revert like any change, with its reason:\n  \"{why}\""),
    );
    let mut table = vec![["id", "op", "row", "changed", "who"].map(String::from).to_vec()];
    table.extend(
        rows.iter()
            .map(|r| (0..5).map(|i| r.get::<_, String>(i)).collect::<Vec<_>>()),
    );
    output::print_table(&table, true, |_, _| output::PLAIN, Some(width()), &[0]);
    Ok(())
}

/// Seals the day with a fresh key, lets a "superuser" edit one change behind
/// the guards, and shows verify naming it.
async fn prove(client: &mut Client) -> Result<()> {
    use pgtrail::integrity::{self, VerifyOptions, crypto::SignerKey};

    output::say(output::HEADER, "\nA trail you can prove:");
    let key = SignerKey::generate("demo").context("making a signing key")?;
    let sealed = integrity::seal(client, &key, &mut |_| {}).await?;
    println!(
        "  sealed {} changes into a signed Merkle log (root {}...)",
        sealed.tree_size,
        &integrity::hex(&sealed.root[..6])
    );
    let options = VerifyOptions {
        public_key: Some(key.verifier()),
        checkpoint: Some(sealed.note.clone()),
        ..Default::default()
    };
    let report = integrity::verify(client, &options).await?;
    output::say(
        output::GOOD,
        &format!("  verify: intact ({} problems)", report.problems.len()),
    );
    client
        .batch_execute(
            "BEGIN; SET LOCAL session_replication_role = replica;
             UPDATE pgtrail.change SET new_values = jsonb_set(new_values, '{email}', '\"someone@else.test\"')
             WHERE id = (SELECT min(id) FROM pgtrail.change WHERE new_values ? 'email');
             COMMIT;",
        )
        .await
        .context("editing the trail as a superuser")?;
    println!("  a superuser edits one recorded email behind the append-only guards ...");
    let report = integrity::verify(client, &options).await?;
    for problem in &report.problems {
        output::say(
            output::BAD,
            &format!(
                "  verify: {}",
                wrap(&problem.message(), width() - 10, "\n          ")
            ),
        );
    }
    Ok(())
}
