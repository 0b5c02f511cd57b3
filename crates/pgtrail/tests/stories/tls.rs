//! Connecting as libpq does, against servers a test starts: TLS in every
//! sslmode with a test CA (the server reports each session encrypted in
//! `pg_stat_ssl`), certificate checks that fail clearly, client
//! certificates, and a server without TLS.

use pgtrail::connect::{ConnectError, Env, Target, connect};
use pgtrail_testkit::TestDb;
use pgtrail_testkit::tls::{TestCa, tls_cluster};

/// Connects with `conn_string` (and `env`), and says whether the server
/// sees the session encrypted.
async fn encrypted(conn_string: &str, env: &Env) -> Result<bool, ConnectError> {
    let target = Target::resolve(Some(conn_string), env)?;
    let client = connect(&target).await?;
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .expect("pg_stat_ssl");
    Ok(row.get(0))
}

#[tokio::test]
async fn tls_as_libpq_does_it() {
    let ca = TestCa::new("pgtrail test CA");
    let cluster = tls_cluster(
        &ca,
        &[
            "hostnossl all tls_only all reject",
            "hostssl all tls_only all trust",
            "hostnossl all cert_user all reject",
            "hostssl all cert_user all cert",
            "host all pw_user all scram-sha-256",
        ],
    );
    let admin = connect(&Target::parse(&cluster.url("postgres"), "the test").expect("admin url"))
        .await
        .expect("the superuser connects");
    admin
        .batch_execute(
            "CREATE ROLE tls_only LOGIN; CREATE ROLE cert_user LOGIN;
             SET password_encryption = 'scram-sha-256';
             CREATE ROLE pw_user LOGIN PASSWORD 'from-the-file';",
        )
        .await
        .expect("roles");
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let other_ca_file = TestCa::new("another CA").write(dir.path(), "other.pem");
    let (client_cert, client_key) = ca.issue(&[], "cert_user").write(dir.path(), "client");
    let port = cluster.port();
    let env = Env::empty().home(dir.path());
    let base = format!("hostaddr=127.0.0.1 port={port} dbname=postgres user=tls_only");
    let ca = ca_file.display();

    // The default (prefer), require, verify-ca and verify-full all encrypt.
    for (conn, what) in [
        (format!("host=127.0.0.1 {base}"), "default sslmode prefer"),
        (format!("host=127.0.0.1 {base} sslmode=require"), "require"),
        (
            format!("host=127.0.0.1 {base} sslmode=allow"),
            "allow, retried over TLS",
        ),
        (
            format!("host=127.0.0.1 {base} sslmode=verify-ca sslrootcert={ca}"),
            "verify-ca",
        ),
        (
            format!("host=localhost {base} sslmode=verify-full sslrootcert={ca}"),
            "verify-full",
        ),
        (
            format!(
                "postgres://tls_only@localhost:{port}/postgres?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"
            ),
            "a URL",
        ),
    ] {
        assert_eq!(
            encrypted(&conn, &env).await.map_err(|e| format!("{what}: {e}")),
            Ok(true),
            "{what}"
        );
    }
    // PGSSLMODE and PGSSLROOTCERT fill in what a URL leaves out.
    let url = format!("postgres://tls_only@localhost:{port}/postgres?hostaddr=127.0.0.1");
    let env_vars = Env::empty()
        .var("PGSSLMODE", "verify-full")
        .var("PGSSLROOTCERT", &ca_file.display().to_string());
    assert!(encrypted(&url, &env_vars).await.expect("PGSSLMODE=verify-full"));
    let target = Target::resolve(Some(&url), &env_vars).expect("target");
    assert_eq!(
        target.tls().describe(),
        format!("sslmode=verify-full (from PGSSLMODE), root certificates from {ca}")
    );

    // A client certificate logs in a role that must show one.
    let cert_conn = format!(
        "host=localhost hostaddr=127.0.0.1 port={port} dbname=postgres user=cert_user sslmode=verify-full sslrootcert={ca} sslcert={} sslkey={}",
        client_cert.display(),
        client_key.display()
    );
    assert_eq!(
        encrypted(&cert_conn, &env).await.map_err(|e| e.to_string()),
        Ok(true)
    );

    // A role that may only use TLS is refused in plain text, with a hint.
    let error = encrypted(&format!("host=127.0.0.1 {base} sslmode=disable"), &env)
        .await
        .expect_err("plain text is refused");
    assert!(matches!(error, ConnectError::Authentication { .. }), "{error}");
    assert!(error.to_string().contains("sslmode=require"), "{error}");

    // verify-full fails on a wrong host name, and on a CA that did not sign.
    let error = encrypted(
        &format!("host=127.0.0.1 {base} sslmode=verify-full sslrootcert={ca}"),
        &env,
    )
    .await
    .expect_err("the certificate is for localhost");
    assert!(matches!(error, ConnectError::Tls { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("not valid for the host name `127.0.0.1`"),
        "{message}"
    );
    assert!(
        message.contains(&format!("port {port}")) && message.contains("database postgres"),
        "{message}"
    );
    let error = encrypted(
        &format!(
            "host=localhost {base} sslmode=verify-full sslrootcert={}",
            other_ca_file.display()
        ),
        &env,
    )
    .await
    .expect_err("another CA");
    assert!(
        error.to_string().contains("not signed by a trusted root"),
        "{error}"
    );
    // Without sslrootcert, verify-full looks for ~/.postgresql/root.crt.
    let error = encrypted(&format!("host=localhost {base} sslmode=verify-full"), &env)
        .await
        .expect_err("no root certificate");
    assert!(error.to_string().contains(".postgresql/root.crt"), "{error}");
    std::fs::create_dir(dir.path().join(".postgresql")).expect("mkdir");
    std::fs::copy(&ca_file, dir.path().join(".postgresql/root.crt")).expect("copy root.crt");
    assert!(
        encrypted(&format!("host=localhost {base} sslmode=verify-full"), &env)
            .await
            .expect("root.crt")
    );

    // A password from ~/.pgpass, or from the file PGPASSFILE names; a file
    // others may read is ignored, as libpq does.
    let pw_conn = format!("host=127.0.0.1 port={port} dbname=postgres user=pw_user");
    let error = encrypted(&pw_conn, &env).await.expect_err("no password yet");
    assert!(error.to_string().contains("no password was given"), "{error}");
    let pgpass = dir.path().join(".pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:{port}:*:pw_user:from-the-file\n")).expect("pgpass");
    std::fs::set_permissions(&pgpass, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    assert!(encrypted(&pw_conn, &env).await.expect("password from ~/.pgpass"));
    let elsewhere = dir.path().join("passwords");
    std::fs::rename(&pgpass, &elsewhere).expect("move");
    let with_var = env.clone().var("PGPASSFILE", &elsewhere.display().to_string());
    assert!(
        encrypted(&pw_conn, &with_var)
            .await
            .expect("password from PGPASSFILE")
    );
    std::fs::set_permissions(&elsewhere, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    assert!(
        encrypted(&pw_conn, &with_var).await.is_err(),
        "a world-readable file is ignored"
    );
}

#[tokio::test]
async fn require_against_a_server_without_tls_fails_clearly() {
    let db = TestDb::new().await;
    let target = Target::resolve(Some(db.url()), &Env::empty().var("PGSSLMODE", "require")).expect("target");
    let error = connect(&target).await.expect_err("the test server has no TLS");
    assert!(matches!(error, ConnectError::Tls { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("does not accept TLS"), "{message}");
    assert!(message.contains("sslmode=require (from PGSSLMODE)"), "{message}");
    // prefer (the default) falls back to plain text.
    let target = Target::resolve(Some(db.url()), &Env::empty()).expect("target");
    connect(&target).await.expect("prefer connects without TLS");
}

#[tokio::test]
async fn password_file_service_file_and_application_name() {
    let db = TestDb::new().await;
    let role = format!("pw_{}", db.name().trim_start_matches("pgtrail_test_"));
    db.client
        .batch_execute(&format!("CREATE ROLE {role} LOGIN PASSWORD 'from-the-file'"))
        .await
        .expect("role");
    let admin = Target::parse(db.url(), "the test").expect("test url");
    let host = admin.settings().value("host").expect("host").to_string();
    let port = admin.settings().value("port").expect("port").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let services = dir.path().join("pg_service.conf");
    std::fs::write(
        &services,
        format!(
            "[trail]\nhost={host}\nport={port}\ndbname={}\nuser={role}\n",
            db.name()
        ),
    )
    .expect("service file");
    let env = Env::empty()
        .var("PGSERVICEFILE", &services.display().to_string())
        .var("PGSERVICE", "trail")
        .var("PGAPPNAME", "nightly-audit");
    let target = Target::resolve(None, &env).expect("target from the service");
    let client = connect(&target).await.expect("connects through the service");
    let row = client
        .query_one(
            "SELECT current_user::text, current_setting('application_name')",
            &[],
        )
        .await
        .expect("who");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        (role.clone(), "nightly-audit".to_string())
    );
    // Without PGAPPNAME the session is pgtrail's.
    let target = Target::resolve(
        None,
        &Env::empty()
            .var("PGSERVICEFILE", &services.display().to_string())
            .var("PGSERVICE", "trail"),
    )
    .expect("target");
    let client = connect(&target).await.expect("connects");
    let name: String = client
        .query_one("SELECT current_setting('application_name')", &[])
        .await
        .expect("application_name")
        .get(0);
    assert_eq!(name, "pgtrail");
    drop(client);
    let _ = db.client.batch_execute(&format!("DROP ROLE {role}")).await;
}
