//! Integration tests for `pgtrail-testkit`: test databases are independent of
//! each other and are gone once dropped.

use pgtrail_testkit::{TestDb, pg_bin_dir, program};
use tokio_postgres::NoTls;

#[tokio::test]
async fn parallel_databases_are_independent_and_dropped() {
    let (a, b) = tokio::join!(TestDb::new(), TestDb::new());
    assert_ne!(a.name(), b.name());
    assert!(a.name().starts_with("pgtrail_test_"), "{}", a.name());

    for db in [&a, &b] {
        let current: String = db
            .client
            .query_one("SELECT current_database()", &[])
            .await
            .expect("current_database")
            .get(0);
        assert_eq!(current, db.name());
    }

    a.client
        .batch_execute("CREATE TABLE only_in_a (x int); INSERT INTO only_in_a VALUES (1)")
        .await
        .expect("create table in a");
    let count_in_b: i64 = b
        .client
        .query_one("SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'", &[])
        .await
        .expect("look for the table in b")
        .get(0);
    assert_eq!(count_in_b, 0, "a's table is visible in b");

    // A second session on a sees the table.
    let a2 = a.connect().await;
    let x: i32 = a2
        .query_one("SELECT x FROM only_in_a", &[])
        .await
        .expect("query a's table from a second session")
        .get(0);
    assert_eq!(x, 1);

    let admin_url = a.admin_url().to_owned();
    let names = [a.name().to_owned(), b.name().to_owned()];
    drop(a); // with a2 still connected: the drop is forced
    drop(b);

    let (admin, connection) = tokio_postgres::connect(&admin_url, NoTls)
        .await
        .expect("connect to the admin database");
    tokio::spawn(connection);
    for name in &names {
        let left: i64 = admin
            .query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[name])
            .await
            .expect("look for the dropped database")
            .get(0);
        assert_eq!(left, 0, "database {name} still exists after drop");
    }
}

#[test]
fn server_binaries_are_found() {
    let dir = pg_bin_dir().expect("PostgreSQL binaries are installed");
    assert!(dir.join("initdb").exists(), "no initdb in {}", dir.display());
    // psql beside them, or on PATH for server builds without client programs.
    let psql = program("psql");
    assert!(
        psql.is_absolute() && psql.exists(),
        "no psql found ({})",
        psql.display()
    );
}
