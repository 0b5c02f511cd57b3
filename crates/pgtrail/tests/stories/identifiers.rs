//! Any identifier PostgreSQL accepts works end to end: named in the config,
//! quoted in the install, recorded in the trail. Names are generated at
//! random: unicode, spaces, dots, double quotes, reserved words.

use pgtrail_capture::quote;
use pgtrail_config::QualifiedName;
use proptest::prelude::*;
use serde_json::json;

use crate::support::{apply, changes};

/// A PostgreSQL identifier: 1 to 20 characters (NAMEDATALEN is 64 bytes), no NUL.
fn identifier() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,10}",
        Just("select".to_string()),
        Just("Order Items".to_string()),
        "[\\PC&&[^\\x00]]{1,12}",
        "[a-zA-Z .\"'\\\\]{1,12}",
    ]
    .prop_filter("fits in NAMEDATALEN", |s| s.len() < 60 && !s.is_empty())
}

/// A TOML basic string holding `text`.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn random_identifiers_are_configured_quoted_and_recorded() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(12));
    let strategy = (identifier(), identifier(), identifier(), identifier())
        .prop_filter("distinct columns", |(_, _, key, secret)| key != secret);
    runner
        .run(&strategy, |(schema, table, key, secret)| {
            runtime.block_on(async {
                let mut db = pgtrail_testkit::TestDb::new().await;
                let qualified = quote::qualified(&schema, &table);
                db.client
                    .batch_execute(&format!(
                        "CREATE SCHEMA {s}; CREATE TABLE {qualified} ({k} int PRIMARY KEY, {c} text);",
                        s = quote::ident(&schema),
                        k = quote::ident(&key),
                        c = quote::ident(&secret),
                    ))
                    .await
                    .unwrap();
                let name = QualifiedName::new(schema.clone(), table.clone()).to_string();
                let config = format!(
                    "[capture]\nschemas = [{}]\n\n[tables.{}]\nredact_columns = [{}]\n",
                    toml_string(&schema),
                    toml_string(&name),
                    toml_string(&secret)
                );
                apply(&mut db.client, &config).await;
                db.client
                    .batch_execute(&format!(
                        "INSERT INTO {qualified} VALUES (1, 'hush'); UPDATE {qualified} SET {k} = 2;",
                        k = quote::ident(&key)
                    ))
                    .await
                    .unwrap();
                let trail = changes(&db.client, &table).await;
                prop_assert_eq!(trail.len(), 2);
                prop_assert_eq!(trail[0].pk.clone(), Some(json!({ key.clone(): 1 })));
                prop_assert_eq!(trail[1].pk.clone(), Some(json!({ key.clone(): 2 })));
                let inserted = trail[0].new.clone().unwrap();
                prop_assert!(inserted[&secret]["redacted"].is_string(), "{}", inserted);
                Ok(())
            })
        })
        .unwrap();
}
