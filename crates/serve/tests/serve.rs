//! `pgtrail serve` against a real database, over real HTTP: a support
//! agent finds who changed an email and why and exports it (from the page,
//! in her browser); an auditor
//! filters a window by actor type, opens a transaction and sees whether it
//! is sealed; requests without a good token are refused; pagination gives
//! every change exactly once while the application keeps writing; errors
//! say what was wrong; every path of the OpenAPI document answers; an
//! operator applies a planned revert (a reader may only plan one); the
//! pages render in a real headless browser.

use std::net::SocketAddr;
use std::sync::Arc;

use pgtrail::config::Config;
use pgtrail::integrity::crypto::SignerKey;
use pgtrail_serve::{Connect, Options, ServeTls, ServeToken, Server, TokenRole, hash_token};
use pgtrail_testkit::TestDb;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READER: &str = "support-token-1";
const AUDITOR: &str = "auditor-token-2";
const OPERATOR: &str = "operator-token-3";

/// A shop: users and orders, audited, with a day of work by a signup, a
/// support agent (who changes an email, with a reason), a batch job and a
/// migration.
async fn shop() -> TestDb {
    let mut db = TestDb::new().await;
    db.client
        .batch_execute(
            "CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL, name text);
             CREATE TABLE orders (id serial PRIMARY KEY, user_id integer, status text, total numeric(10,2));",
        )
        .await
        .unwrap();
    let config = Config::parse("[capture]\ninclude = [\"users\", \"orders\"]\n", "pgtrail.toml").unwrap();
    pgtrail::plan::apply(&mut db.client, &config).await.unwrap();
    db.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_id => 'u-1', actor_name => 'ann', actor_type => 'user', reason => 'sign-up');
             INSERT INTO users VALUES (1, 'ann@old.example', 'Ann'), (2, 'bob@example.com', 'Bob');
             COMMIT;
             BEGIN;
             SELECT pgtrail.set_context(actor_id => 'agent-7', actor_name => 'sam@support', actor_type => 'support',
                                        reason => 'ticket 4411: customer asked by phone');
             UPDATE users SET email = 'ann@new.example' WHERE id = 1;
             COMMIT;
             BEGIN;
             SELECT pgtrail.set_context(actor_id => 'billing', actor_type => 'system');
             INSERT INTO orders (user_id, status, total) VALUES (1, 'open', 10), (2, 'open', 20);
             COMMIT;",
        )
        .await
        .unwrap();
    db
}

fn connector(db: &TestDb) -> Connect {
    let url = Arc::new(db.url().to_string());
    Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { Ok(pgtrail_testkit::connect_to(&url).await) })
    })
}

fn tokens() -> Vec<ServeToken> {
    vec![
        ServeToken {
            name: "support".into(),
            role: TokenRole::Reader,
            sha256: hash_token(READER),
        },
        ServeToken {
            name: "auditor".into(),
            role: TokenRole::Reader,
            sha256: hash_token(AUDITOR),
        },
        ServeToken {
            name: "dana-ops".into(),
            role: TokenRole::Operator,
            sha256: hash_token(OPERATOR),
        },
    ]
}

/// A running server on a free port; stopped when dropped.
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(db: &TestDb, anonymous_read: bool) -> Running {
    let options = Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        anonymous_read,
        tokens: tokens(),
        connections: 4,
        tls: None,
    };
    let server = Server::bind(options, connector(db))
        .await
        .expect("the server starts");
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
    }
}

/// An HTTP/1.1 answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh connection (`Connection: close`, read to the end).
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

async fn get(addr: SocketAddr, path: &str, token: &str) -> Answer {
    let bearer = format!("Bearer {token}");
    request(addr, "GET", path, &[("Authorization", &bearer)], "").await
}

#[tokio::test]
async fn a_support_agent_finds_who_changed_an_email_and_why_and_exports_it() {
    let db = shop().await;
    let server = start(&db, false).await;

    // Find the customer by the email she had.
    let found = get(server.addr, "/api/v1/changes?q=ann@old.example", READER).await;
    assert_eq!(found.status, 200, "{}", found.body);
    let changes = found.json()["changes"].as_array().unwrap().clone();
    assert!(!changes.is_empty());
    assert!(
        changes
            .iter()
            .all(|c| c["table_name"] == "users" && c["pk"]["id"] == 1)
    );

    // Her row's history: who changed the email, and why.
    let history = get(server.addr, "/api/v1/rows/users/history?key=1", READER).await;
    assert_eq!(history.status, 200, "{}", history.body);
    let history = history.json();
    let update = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["op"] == "UPDATE")
        .expect("the email change")
        .clone();
    assert_eq!(update["changed_fields"], serde_json::json!(["email"]));
    assert_eq!(update["old_values"]["email"], "ann@old.example");
    assert_eq!(update["new_values"]["email"], "ann@new.example");
    assert_eq!(update["actor_name"], "sam@support");
    assert_eq!(update["reason"], "ticket 4411: customer asked by phone");

    // Blame says the same per column.
    let blame = get(server.addr, "/api/v1/rows/public.users/blame?key=id%3D1", READER)
        .await
        .json();
    let email = blame["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column_name"] == "email")
        .unwrap()
        .clone();
    assert_eq!(email["actor_name"], "sam@support");
    assert_eq!(email["value"], "ann@new.example");

    // Her state before the change.
    let before = update["changed_at"].as_str().unwrap().to_string();
    let state = get(
        server.addr,
        &format!("/api/v1/rows/users/state?key=1&at={}", urlencode(&before)),
        READER,
    )
    .await;
    assert_eq!(state.status, 200, "{}", state.body);

    // Exported as CSV.
    let csv = get(server.addr, "/api/v1/rows/users/history?key=1&format=csv", READER).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.header("content-disposition").unwrap().contains("attachment"));
    assert!(csv.body.starts_with("id,txid,changed_at,"));
    assert!(csv.body.contains("ticket 4411: customer asked by phone"));

    // The page a person reads says it too, with links.
    let page = get(server.addr, "/row/users?key=1", READER).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("sam@support"));
    assert!(page.body.contains("ann@<mark class=del>old</mark>.example"));
    assert!(page.body.contains("ann@<mark class=ins>new</mark>.example"));
    assert!(page.body.contains("href=\"/?actor=agent-7\""));
    assert!(page.body.contains("/api/v1/rows/public.users/history?key="));
    for header in [
        "content-security-policy",
        "x-frame-options",
        "x-content-type-options",
    ] {
        assert!(page.header(header).is_some(), "{header} missing");
    }

    // And she exports it from that page in her browser (logged in): a click
    // on CSV, a click on JSON, two files downloaded.
    let url = format!("http://{}/row/users?key=1", server.addr);
    let (_dir, files) =
        tokio::task::spawn_blocking(move || browser_downloads(&url, READER, &["CSV", "JSON"]))
            .await
            .unwrap();
    let csv = std::fs::read_to_string(files["CSV"].as_str().unwrap()).unwrap();
    assert!(csv.starts_with("id,txid,changed_at,"), "{csv}");
    assert!(csv.contains("ticket 4411: customer asked by phone"), "{csv}");
    assert!(
        csv.contains("ann@old.example") && csv.contains("ann@new.example"),
        "{csv}"
    );
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(files["JSON"].as_str().unwrap()).unwrap()).unwrap();
    let exported = json["changes"].as_array().unwrap();
    assert_eq!(exported.len(), history["changes"].as_array().unwrap().len());
    assert!(
        exported
            .iter()
            .any(|c| c["actor_name"] == "sam@support" && c["old_values"]["email"] == "ann@old.example")
    );
}

/// Opens `url` in headless Chromium logged in with `token` (the login
/// cookie), clicks each link whose text is given, and returns the directory
/// of the downloads and `{text: file}` (`tests/axe/run.mjs --download`).
fn browser_downloads(url: &str, token: &str, links: &[&str]) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/axe/run.mjs");
    let output = std::process::Command::new("node")
        .arg(script)
        .arg("--download")
        .arg(dir.path())
        .arg(format!("pgtrail_token={token}"))
        .arg(chromium())
        .arg(url)
        .args(links)
        .output()
        .expect("node is needed for this test (Debian's `nodejs`; .ci/run installs it)");
    assert!(
        output.status.success(),
        "downloads: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let files = serde_json::from_slice(&output.stdout).expect("the downloads as JSON");
    (dir, files)
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn an_auditor_filters_by_actor_type_opens_a_transaction_and_sees_it_sealed() {
    let mut db = shop().await;
    let server = start(&db, false).await;

    let unsealed = get(server.addr, "/api/v1/proof", AUDITOR).await.json();
    assert_eq!(unsealed["last_seal"], Value::Null);

    let key = SignerKey::generate("shop.example.com/audit").unwrap();
    pgtrail::integrity::seal(&mut db.client, &key, &mut |_| {})
        .await
        .unwrap();

    let support = get(
        server.addr,
        "/api/v1/changes?actor_type=support&since=1%20hour%20ago",
        AUDITOR,
    )
    .await;
    assert_eq!(support.status, 200, "{}", support.body);
    let support = support.json()["changes"].as_array().unwrap().clone();
    assert_eq!(support.len(), 1);
    let txid = support[0]["txid"].as_i64().unwrap();

    let tx = get(server.addr, &format!("/api/v1/transactions/{txid}"), AUDITOR)
        .await
        .json();
    let id = tx["changes"][0]["id"].as_i64().unwrap();
    assert!(tx["seals"][id.to_string()]["seal_id"].is_i64(), "{tx}");

    let proof = get(server.addr, "/api/v1/proof?since=1%20day%20ago", AUDITOR)
        .await
        .json();
    assert!(proof["sealed_up_to"].is_string(), "{proof}");
    assert_eq!(proof["capture_gaps"], serde_json::json!([]));

    let page = get(server.addr, &format!("/tx/{txid}"), AUDITOR).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Sealed: all 1 change(s) are in a seal."),
        "{}",
        page.body
    );

    let activity = get(
        server.addr,
        "/api/v1/reports/activity?since=1%20day%20ago&burst=1&window=60",
        AUDITOR,
    )
    .await;
    assert_eq!(activity.status, 200, "{}", activity.body);
    let activity = activity.json();
    assert!(
        activity["by_actor"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["actor_name"] == "sam@support")
    );
    assert!(
        activity["bursts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["actor_id"] == "u-1")
    );

    // What undoing the support agent's transaction would do: a plan, nothing applied.
    let plan = get(server.addr, &format!("/api/v1/revert/plan?tx={txid}"), AUDITOR).await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    let plan = plan.json();
    assert_eq!(plan["applied"], false);
    assert!(
        plan["plan"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["operation"] == "UPDATE"),
        "{plan}"
    );
    let email: String = db
        .client
        .query_one("SELECT email FROM users WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(email, "ann@new.example");
}

#[tokio::test]
async fn requests_without_a_good_token_are_refused() {
    let db = shop().await;
    let server = start(&db, false).await;

    let none = request(server.addr, "GET", "/api/v1/changes", &[], "").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_eq!(none.json()["error"]["message"], "a token is needed");

    let wrong = get(server.addr, "/api/v1/changes", "guess").await;
    assert_eq!(wrong.status, 401);
    assert!(!wrong.body.contains("changes\":"));

    // A person without a token is sent to the login page, which sets a
    // cookie for a good token only, and refuses a post from another site.
    let page = request(server.addr, "GET", "/row/users?key=1", &[], "").await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login?next=/row/users"));
    let bad = request(
        server.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=guess&next=%2F",
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_none());
    let cross = request(
        server.addr,
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Origin", "https://evil.example"),
        ],
        &format!("token={READER}&next=%2F"),
    )
    .await;
    assert_eq!(cross.status, 403);
    let good = request(
        server.addr,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={READER}&next=%2Frow%2Fusers%3Fkey%3D1"),
    )
    .await;
    assert_eq!(good.status, 303, "{}", good.body);
    assert_eq!(good.header("location"), Some("/row/users?key=1"));
    let cookie = good.header("set-cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let cookie = cookie.split(';').next().unwrap().to_string();
    let page = request(server.addr, "GET", "/row/users?key=1", &[("Cookie", &cookie)], "").await;
    assert_eq!(page.status, 200);

    // Health needs no token; a server with no token and no anonymous reading does not start.
    assert_eq!(request(server.addr, "GET", "/healthz", &[], "").await.status, 200);
    let nobody = Server::bind(
        Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Options::default()
        },
        connector(&db),
    )
    .await;
    assert!(matches!(nobody, Err(pgtrail_serve::ServeError::NoAccess)));
}

#[tokio::test]
async fn a_database_user_who_may_not_read_the_trail_cannot_start_a_server() {
    let db = shop().await;
    let role = format!("stranger_{}", db.name().trim_start_matches("pgtrail_test_"));
    db.client
        .batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN"))
        .await
        .unwrap();
    let url = Arc::new(db.url().to_string());
    let role_for = role.clone();
    let connect: Connect = Arc::new(move || {
        let (url, role) = (url.clone(), role_for.clone());
        Box::pin(async move {
            let client = pgtrail_testkit::connect_to(&url).await;
            client
                .batch_execute(&format!("SET SESSION AUTHORIZATION \"{role}\""))
                .await
                .map_err(|e| e.to_string())?;
            Ok(client)
        })
    });
    let result = Server::bind(
        Options {
            listen: "127.0.0.1:0".parse().unwrap(),
            tokens: tokens(),
            ..Options::default()
        },
        connect,
    )
    .await;
    let Err(error) = result else {
        panic!("a server that reads as a stranger started");
    };
    let text = error.to_string();
    assert!(text.contains("may not act as"), "{text}");
    assert!(text.contains("help: GRANT"), "{text}");
    db.client
        .batch_execute(&format!("DROP ROLE \"{role}\""))
        .await
        .unwrap();
}

#[tokio::test]
async fn pagination_gives_every_change_exactly_once_while_the_application_writes() {
    let db = shop().await;
    db.client
        .batch_execute("INSERT INTO orders (user_id, status, total) SELECT g % 2 + 1, 'open', g FROM generate_series(1, 300) g")
        .await
        .unwrap();
    let before: Vec<i64> = db
        .client
        .query("SELECT id FROM pgtrail.changes ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let server = start(&db, false).await;

    // The application keeps writing while the pages are read.
    let writer = db.connect().await;
    let writing = tokio::spawn(async move {
        for i in 0..60 {
            writer
                .batch_execute(&format!(
                    "INSERT INTO orders (user_id, status, total) VALUES (1, 'open', {i})"
                ))
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    });
    let mut seen: Vec<i64> = Vec::new();
    let mut path = "/api/v1/changes?limit=37".to_string();
    let mut pages = 0;
    loop {
        let page = get(server.addr, &path, READER).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let page = page.json();
        seen.extend(
            page["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_i64().unwrap()),
        );
        pages += 1;
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/changes?limit=37&after={next}"),
            None => break,
        }
    }
    writing.await.unwrap();
    assert!(pages > 8);
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a change was given twice");
    for id in &before {
        assert!(unique.binary_search(id).is_ok(), "change {id} was never given");
    }
}

#[tokio::test]
async fn the_timeline_exported_as_csv_comes_page_by_page_through_its_link_header() {
    let db = shop().await;
    db.client
        .batch_execute(
            "INSERT INTO orders (user_id, status, total) SELECT g % 2 + 1, 'open', g FROM generate_series(1, 120) g;
             UPDATE orders SET status = 'paid' WHERE total <= 40;",
        )
        .await
        .unwrap();
    let server = start(&db, false).await;
    // What the JSON pages give for the same filter (orders only, no users).
    let filter = "&table=orders&since=2000-01-01T00:00:00Z";
    let expected = all_pages(server.addr, filter, 37).await;
    assert!(expected.len() > 150, "{} changes", expected.len());

    // An export a user downloads page by page, following rel="next".
    let mut path = format!("/api/v1/changes?format=csv&limit=37{filter}");
    let mut seen: Vec<i64> = Vec::new();
    let mut pages = 0;
    loop {
        let page = get(server.addr, &path, READER).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let mut lines = page.body.lines();
        assert!(lines.next().unwrap().starts_with("id,txid,changed_at,"));
        let ids: Vec<i64> = lines
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(ids.len() <= 37);
        seen.extend(ids);
        pages += 1;
        let Some(link) = page.header("link") else {
            break;
        };
        // The next page of the same export: same filter, same size, CSV.
        let (target, rel) = link.split_once("; ").unwrap();
        assert_eq!(rel, "rel=\"next\"");
        let target = target.trim_start_matches('<').trim_end_matches('>');
        assert!(target.starts_with("/api/v1/changes?"), "{link}");
        for part in [
            "format=csv",
            "limit=37",
            "table=orders",
            "since=2000-01-01T00%3A00%3A00Z",
            "after=",
        ] {
            assert!(target.contains(part), "{part} missing from {link}");
        }
        assert_eq!(target.matches("after=").count(), 1, "{link}");
        path = target.to_string();
    }
    assert_eq!(pages, expected.len().div_ceil(37));
    assert_eq!(
        seen, expected,
        "the CSV pages hold the JSON pages' changes, in order"
    );
}

#[tokio::test]
async fn a_large_transaction_comes_back_page_by_page_each_change_once_in_order() {
    let db = shop().await;
    // A batch of 1,200 changes in one transaction, on two tables, while
    // another transaction writes in between (its ids are not this one's).
    let other = db.connect().await;
    db.client
        .batch_execute(
            "BEGIN;
             INSERT INTO orders (user_id, status, total) SELECT g % 2 + 1, 'open', g FROM generate_series(1, 700) g;",
        )
        .await
        .unwrap();
    other
        .batch_execute("INSERT INTO orders (user_id, status, total) VALUES (1, 'open', 9999)")
        .await
        .unwrap();
    db.client
        .batch_execute(
            "UPDATE orders SET status = 'paid' WHERE total BETWEEN 1 AND 498 AND status = 'open' AND id > 2;
             INSERT INTO users SELECT g, 'u' || g || '@example.com', NULL FROM generate_series(100, 101) g;
             COMMIT;",
        )
        .await
        .unwrap();
    let txid: i64 = db
        .client
        .query_one(
            "SELECT txid FROM pgtrail.changes WHERE table_name = 'users' AND pk = '{\"id\": 100}'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let expected: Vec<i64> = db
        .client
        .query(
            "SELECT id FROM pgtrail.changes WHERE txid = $1 ORDER BY id",
            &[&txid],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(expected.len(), 1200);
    let server = start(&db, false).await;

    for limit in [None, Some(500), Some(7)] {
        let base = format!("/api/v1/transactions/{txid}?");
        let limit_param = limit.map(|l| format!("limit={l}&")).unwrap_or_default();
        let mut path = format!("{base}{limit_param}");
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = get(server.addr, &path, READER).await;
            assert_eq!(page.status, 200, "{path}: {}", page.body);
            let page = page.json();
            assert_eq!(page["txid"], txid);
            assert_eq!(page["change_count"], 1200, "{path}");
            let changes = page["changes"].as_array().unwrap();
            assert!(changes.len() <= limit.unwrap_or(50) as usize);
            assert!(changes.iter().all(|c| c["txid"] == txid));
            seen.extend(changes.iter().map(|c| c["id"].as_i64().unwrap()));
            pages += 1;
            match page["next"].as_str() {
                Some(next) => path = format!("{base}{limit_param}after={next}"),
                None => break,
            }
        }
        assert_eq!(seen, expected, "limit {limit:?}: every change once, in id order");
        assert_eq!(
            pages,
            1200_usize.div_ceil(limit.unwrap_or(50) as usize),
            "limit {limit:?}"
        );
    }

    // CSV pages the same way; the next page is a Link header.
    let csv = get(
        server.addr,
        &format!("/api/v1/transactions/{txid}?format=csv&limit=500"),
        READER,
    )
    .await;
    assert_eq!(csv.status, 200, "{}", csv.body);
    assert_eq!(csv.body.lines().count(), 501);
    let link = csv.header("link").expect("a Link header to the next page");
    assert_eq!(
        link,
        format!(
            "</api/v1/transactions/{txid}?format=csv&limit=500&after={}>; rel=\"next\"",
            expected[499]
        )
    );
    let last = get(
        server.addr,
        &format!(
            "/api/v1/transactions/{txid}?format=csv&limit=500&after={}",
            expected[999]
        ),
        READER,
    )
    .await;
    assert_eq!(last.body.lines().count(), 201);
    assert_eq!(last.header("link"), None);

    // Too large a page is refused, as for the timeline.
    let refused = get(
        server.addr,
        &format!("/api/v1/transactions/{txid}?limit=501"),
        READER,
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("between 1 and 500"), "{}", refused.body);

    // The page: the count of all, one page of changes, a link to the next.
    let mut path = format!("/tx/{txid}?limit=500");
    let mut articles = 0;
    let mut pages = 0;
    loop {
        let page = get(server.addr, &path, READER).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(page.body.contains("<p>1200 change(s) at"), "{}", page.body);
        articles += page.body.matches("<article class=\"change\">").count();
        pages += 1;
        let Some((_, rest)) = page.body.split_once("<a rel=\"next\" href=\"") else {
            break;
        };
        path = rest.split_once('"').unwrap().0.replace("&amp;", "&");
        assert!(pages < 5, "the pages do not end");
    }
    assert_eq!((pages, articles), (3, 1200));
}

/// Every page of `/api/v1/changes` (as `limit`, `after` and `filter` make
/// them) read to the end, as ids.
async fn all_pages(addr: SocketAddr, filter: &str, limit: i64) -> Vec<i64> {
    let mut seen = Vec::new();
    let mut path = format!("/api/v1/changes?limit={limit}{filter}");
    loop {
        let page = get(addr, &path, READER).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let page = page.json();
        seen.extend(
            page["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_i64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => path = format!("/api/v1/changes?limit={limit}{filter}&after={next}"),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn the_newest_changes_are_the_newest_of_the_whole_trail_however_far_apart_in_time() {
    // Without a filter that bounds what it reads, a page is looked for in
    // windows going back from the newest change, then in the whole trail:
    // whichever window answers, the pages must be those of the full order.
    let db = shop().await;
    db.client
        .batch_execute("INSERT INTO orders (user_id, status, total) SELECT g % 2 + 1, 'open', g FROM generate_series(1, 200) g")
        .await
        .unwrap();
    // Spread the changes over a year and a half, out of id order (a long
    // transaction's changes carry its old start), with ties: a few in the
    // last minutes, some an hour back, a day back, a month back and more
    // than a year back, so that every window and the whole trail answer
    // some page. Capture stamps the server's clock; this rewrites it, as
    // the query benchmark does.
    db.client
        .batch_execute(
            "SET session_replication_role = replica;
             UPDATE pgtrail.change SET changed_at = now() - CASE
                 WHEN id % 10 = 0 THEN interval '1 minute' * (id % 7)
                 WHEN id % 10 IN (1, 2) THEN interval '70 minutes' + interval '1 second' * (id % 5)
                 WHEN id % 10 IN (3, 4) THEN interval '1 day' + interval '1 minute' * (id % 3)
                 WHEN id % 10 = 5 THEN interval '30 days'
                 ELSE interval '500 days' - interval '1 hour' * (id % 11) END;
             SET session_replication_role = DEFAULT;",
        )
        .await
        .unwrap();
    let expected = |filter: &str| {
        let sql = format!("SELECT id FROM pgtrail.changes {filter} ORDER BY changed_at DESC, id DESC");
        let client = &db.client;
        async move {
            client
                .query(&sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i64>(0))
                .collect::<Vec<i64>>()
        }
    };
    let server = start(&db, false).await;
    let everything = expected("").await;
    assert!(everything.len() > 200);
    for limit in [1, 7, 50, 500] {
        assert_eq!(
            all_pages(server.addr, "", limit).await,
            everything,
            "limit {limit}"
        );
    }
    // A filter that no index bounds, and an `until` in the past.
    assert_eq!(
        all_pages(server.addr, "&op=INSERT&table=orders", 9).await,
        expected("WHERE op = 'INSERT' AND table_name = 'orders'").await
    );
    assert_eq!(
        all_pages(server.addr, "&until=2%20hours%20ago", 9).await,
        expected("WHERE changed_at < now() - interval '2 hours'").await
    );
}

#[tokio::test]
async fn errors_say_what_was_wrong_and_how_to_fix_it() {
    let db = shop().await;
    let server = start(&db, false).await;
    let error = |answer: Answer| {
        let json = answer.json();
        (
            answer.status,
            json["error"]["message"].as_str().unwrap_or("").to_string(),
            json["error"]["help"].as_str().unwrap_or("").to_string(),
        )
    };

    let (status, message, help) = error(get(server.addr, "/api/v1/changes?since=whenever", READER).await);
    assert_eq!(status, 400);
    assert!(message.starts_with("invalid time `whenever`"), "{message}");
    assert!(help.contains("2h ago"), "{help}");

    let (status, message, help) = error(get(server.addr, "/api/v1/rows/user/history?key=1", READER).await);
    assert_eq!(status, 404);
    assert_eq!(
        message,
        "table `user` is not audited by pgtrail; did you mean `users`?"
    );
    assert!(help.contains("public.orders, public.users"), "{help}");

    let (status, message, _) = error(get(server.addr, "/api/v1/rows/users/history?key=abc", READER).await);
    assert_eq!(status, 400);
    assert!(
        message.contains("`id` is integer but `abc` is not a number"),
        "{message}"
    );

    let (status, message, _) = error(get(server.addr, "/api/v1/changes?acter=ann", READER).await);
    assert_eq!(status, 400);
    assert_eq!(message, "unknown parameter `acter`; did you mean `actor`?");

    let (status, message, help) = error(
        get(
            server.addr,
            "/api/v1/changes?since=now&until=1%20day%20ago",
            READER,
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("is after until"), "{message}");
    assert_eq!(help, "swap them, or leave one out");

    let (status, message, help) =
        error(get(server.addr, "/api/v1/changes?table=users&field=emial", READER).await);
    assert_eq!(status, 400);
    assert_eq!(message, "field: public.users has no column `emial`");
    assert_eq!(help, "did you mean `email`?");

    let (status, _, _) = error(get(server.addr, "/api/v1/changes?after=nonsense", READER).await);
    assert_eq!(status, 400);

    let (status, message, _) = error(get(server.addr, "/api/v1/nothing-here", READER).await);
    assert_eq!(status, 404);
    assert!(message.contains("no page or endpoint"), "{message}");
}

#[tokio::test]
async fn every_path_of_the_openapi_document_answers() {
    let db = shop().await;
    let server = start(&db, false).await;
    let document = get(server.addr, "/api/openapi.json", READER).await.json();
    assert_eq!(document["openapi"], "3.1.0");
    let txid: i64 = db
        .client
        .query_one("SELECT max(txid) FROM pgtrail.changes", &[])
        .await
        .unwrap()
        .get(0);
    for (path, operations) in document["paths"].as_object().unwrap() {
        if operations.get("get").is_none() {
            // POST /api/v1/revert: its own story (an operator applies a revert).
            continue;
        }
        let concrete = path
            .replace("{table}", "users")
            .replace("{txid}", &txid.to_string());
        let query = match path.as_str() {
            "/api/v1/rows/{table}/history" | "/api/v1/rows/{table}/state" | "/api/v1/rows/{table}/blame" => {
                "?key=1"
            }
            "/api/v1/revert/plan" => "?table=users&key=1",
            _ => "",
        };
        let answer = get(server.addr, &format!("{concrete}{query}"), READER).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    }
    assert_eq!(
        document["paths"].as_object().unwrap().len(),
        pgtrail_serve::openapi::API_PATHS.len()
    );
}

#[tokio::test]
async fn with_a_certificate_the_server_speaks_https_itself() {
    let db = shop().await;
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    // A key that is not there: a clear error at start.
    let mut options = Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        anonymous_read: false,
        tokens: tokens(),
        connections: 2,
        tls: Some(ServeTls {
            cert: cert.clone(),
            key: dir.path().join("missing.pem"),
        }),
    };
    let error = Server::bind(options.clone(), connector(&db))
        .await
        .err()
        .expect("a missing key stops the start");
    assert!(error.to_string().contains("missing.pem"), "{error}");
    assert!(
        error.to_string().contains("the key file") && error.to_string().contains("not found"),
        "{error}"
    );

    // A key that cannot be read (a directory), a certificate file holding
    // no certificate, and the key of another certificate: each said plainly.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let other_key = dir.path().join("other-key.pem");
    std::fs::write(&other_key, other.signing_key.serialize_pem()).unwrap();
    for (cert_file, key_file, expected) in [
        (cert.clone(), dir.path().to_path_buf(), "is a directory"),
        (key.clone(), key.clone(), "no certificate in it"),
        (cert.clone(), cert.clone(), "no private key in it"),
        (cert.clone(), other_key, "the key is not the certificate's"),
    ] {
        options.tls = Some(ServeTls {
            cert: cert_file,
            key: key_file,
        });
        let error = Server::bind(options.clone(), connector(&db))
            .await
            .err()
            .expect("a bad certificate or key stops the start");
        assert!(error.to_string().contains(expected), "{expected}: {error}");
        assert!(error.to_string().contains("--tls-cert"), "{error}");
    }

    options.tls = Some(ServeTls {
        cert: cert.clone(),
        key,
    });
    let server = Server::bind(options, connector(&db)).await.unwrap();
    assert!(server.https());
    let addr = server.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));

    // A client that trusts the certificate gets answers over TLS.
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(
        format!(
            "GET /api/v1/changes?table=users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {READER}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("ann@new.example"), "{answer}");

    // Plain HTTP on the same port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw).await;
    assert!(!String::from_utf8_lossy(&raw).contains("200 OK"));

    let _ = stop.send(());
    running.await.unwrap().unwrap();
}

async fn ann_email(db: &TestDb) -> String {
    db.client
        .query_one("SELECT email FROM users WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0)
}

/// The value of a hidden form field in a page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no field {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn an_operator_applies_a_planned_revert_and_a_reader_may_only_plan_it() {
    let db = shop().await;
    let server = start(&db, false).await;
    // The support agent's change of Ann's email, to undo.
    let txid: i64 = db
        .client
        .query_one(
            "SELECT txid FROM pgtrail.changes WHERE table_name = 'users' AND op = 'UPDATE'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // Anyone with a token sees the plan first, and its id.
    let plan = get(server.addr, &format!("/api/v1/revert/plan?tx={txid}"), READER).await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    let plan = plan.json();
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["rows"], 1);
    let plan_id = plan["plan_id"].as_str().unwrap().to_string();

    // A reader may not apply it.
    let body = format!("tx={txid}&reason=undo&plan_id={plan_id}");
    let post = |token: &'static str, body: String| {
        let addr = server.addr;
        async move {
            let bearer = format!("Bearer {token}");
            request(
                addr,
                "POST",
                "/api/v1/revert",
                &[
                    ("Authorization", &bearer),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                &body,
            )
            .await
        }
    };
    let refused = post(READER, body.clone()).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operator token")
    );
    assert_eq!(ann_email(&db).await, "ann@new.example");

    // An operator must say why, and apply the plan that was shown.
    let no_reason = post(OPERATOR, format!("tx={txid}&plan_id={plan_id}")).await;
    assert_eq!(no_reason.status, 400, "{}", no_reason.body);
    assert!(
        no_reason.body.contains("`reason` is needed"),
        "{}",
        no_reason.body
    );
    let other_plan = post(OPERATOR, format!("tx={txid}&reason=undo&plan_id=0000")).await;
    assert_eq!(other_plan.status, 409, "{}", other_plan.body);
    assert!(
        other_plan.body.contains("changed since the plan was shown"),
        "{}",
        other_plan.body
    );
    assert_eq!(ann_email(&db).await, "ann@new.example");

    let applied = post(
        OPERATOR,
        format!("tx={txid}&reason=ticket%204412%3A%20wrong%20customer&plan_id={plan_id}"),
    )
    .await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    let applied = applied.json();
    assert_eq!(applied["applied"], true);
    assert_eq!(ann_email(&db).await, "ann@old.example");
    // The revert is audited under the operator's identity, with the reason.
    let revert_tx = applied["txid"].as_i64().unwrap();
    let row = db
        .client
        .query_one(
            "SELECT actor_name, reason, context ? 'revert' FROM pgtrail.changes WHERE txid = $1",
            &[&revert_tx],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("dana-ops"));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("ticket 4412: wrong customer")
    );
    assert!(row.get::<_, bool>(2));

    // In the browser (login cookie): the plan's page carries a CSRF token;
    // a post without it, or from another site, changes nothing.
    let cookie = format!("pgtrail_token={OPERATOR}");
    let signup_tx: i64 = db
        .client
        .query_one(
            "SELECT txid FROM pgtrail.changes WHERE table_name = 'orders' ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let page = request(
        server.addr,
        "GET",
        &format!("/revert?tx={signup_tx}"),
        &[("Cookie", &cookie)],
        "",
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Apply this revert as dana-ops"),
        "{}",
        page.body
    );
    let form = format!(
        "tx={signup_tx}&conflicts=refuse&plan_id={}&reason=duplicate%20orders",
        hidden(&page.body, "plan_id")
    );
    let origin = format!("http://{}", server.addr);
    let form_post = |body: String, origin: String| {
        let addr = server.addr;
        let cookie = cookie.clone();
        async move {
            request(
                addr,
                "POST",
                "/revert",
                &[
                    ("Cookie", &cookie),
                    ("Origin", &origin),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                ],
                &body,
            )
            .await
        }
    };
    let without_csrf = form_post(form.clone(), origin.clone()).await;
    assert_eq!(without_csrf.status, 403, "{}", without_csrf.body);
    let with_csrf = format!("{form}&csrf={}", hidden(&page.body, "csrf"));
    let cross_site = form_post(with_csrf.clone(), "https://evil.example".into()).await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    let orders: i64 = db
        .client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 2);
    let done = form_post(with_csrf, origin).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(done.header("location").unwrap().starts_with("/tx/"));
    let orders: i64 = db
        .client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 0);

    // A reader's page shows the plan without the form.
    let reader_page = request(
        server.addr,
        "GET",
        &format!("/revert?tx={txid}"),
        &[("Cookie", &format!("pgtrail_token={READER}"))],
        "",
    )
    .await;
    assert_eq!(reader_page.status, 200, "{}", reader_page.body);
    assert!(reader_page.body.contains("needs an operator token"));
    assert!(!reader_page.body.contains("name=\"reason\""));

    // In the database too, the reader role plans but cannot apply.
    let reader_role: String = db
        .client
        .query_one("SELECT pgtrail.role_name('reader')::text", &[])
        .await
        .unwrap()
        .get(0);
    db.client
        .batch_execute(&format!("SET ROLE \"{reader_role}\""))
        .await
        .unwrap();
    let selector = serde_json::json!({"txids": [txid]});
    let planned = db
        .client
        .query("SELECT * FROM pgtrail.revert_plan($1::jsonb)", &[&selector])
        .await;
    assert!(planned.is_ok(), "{planned:?}");
    let applying = db
        .client
        .query(
            "SELECT * FROM pgtrail.revert($1::jsonb, 'refuse', 'x')",
            &[&selector],
        )
        .await
        .unwrap_err();
    assert_eq!(
        applying.as_db_error().map(|e| e.code().code()),
        Some("42501"),
        "{applying}"
    );
    db.client.batch_execute("RESET ROLE").await.unwrap();
}

/// The DOM of a page as a headless Chromium builds it (the server lets
/// anonymous requests read: a browser started from a test sends no header).
fn chromium_dom(url: &str) -> String {
    let program = chromium();
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the DOM is UTF-8")
}

/// The headless browser's program.
fn chromium() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Chromium is needed for this test: install Debian's `chromium` package (.ci/run does)")
}

/// axe-core's violations on each page, as the pages are in headless
/// Chromium (`tests/axe/run.mjs`): `{url: [{id, impact, help, nodes}]}`.
fn axe_violations(urls: &[String]) -> Value {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/axe");
    assert!(
        dir.join("node_modules/axe-core/axe.min.js").exists(),
        "axe-core is needed for this test: run `npm ci` in crates/serve/tests/axe (.ci/run does)"
    );
    let output = std::process::Command::new("node")
        .arg(dir.join("run.mjs"))
        .arg(chromium())
        .args(urls)
        .output()
        .expect("node is needed for this test (Debian's `nodejs`; .ci/run installs it)");
    assert!(
        output.status.success(),
        "axe: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("axe's answer is JSON")
}

/// Checks a page a screen reader and a keyboard can use: a language, a
/// title, one h1, a skip link, a label for every input, headers on every
/// table. (Quick checks of the DOM; axe-core itself runs on every page too.)
fn accessible(dom: &str, page: &str) {
    assert!(dom.contains("<html lang=\"en\">"), "{page}: no language");
    assert!(
        dom.contains("<title>") && dom.contains("· pgtrail</title>"),
        "{page}: no title"
    );
    assert_eq!(dom.matches("<h1>").count(), 1, "{page}: one h1");
    assert!(dom.contains("href=\"#main\""), "{page}: no skip link");
    assert!(dom.contains("name=\"viewport\""), "{page}: not for phones");
    for input in dom.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap()];
        if tag.contains("type=\"hidden\"") {
            continue;
        }
        let id = tag
            .split("id=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_else(|| panic!("{page}: an input without id"));
        assert!(
            dom.contains(&format!("<label for=\"{id}\"")),
            "{page}: input {id} has no label"
        );
    }
    for table in dom.split("<table").skip(1) {
        assert!(table.contains("<th"), "{page}: a table without headers");
    }
}

#[tokio::test]
async fn the_pages_render_in_a_real_browser() {
    let db = shop().await;
    let server = start(&db, true).await;
    let txid: i64 = db
        .client
        .query_one(
            "SELECT txid FROM pgtrail.changes WHERE actor_type = 'support'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let base = format!("http://{}", server.addr);
    let pages = [
        ("timeline", format!("{base}/?actor_type=support"), "sam@support"),
        ("search", format!("{base}/?q=bob%40example.com"), "id=2"),
        (
            "row",
            format!("{base}/row/users?key=1"),
            "ticket 4411: customer asked by phone",
        ),
        ("blame", format!("{base}/blame/users?key=1"), "ann@new.example"),
        ("transaction", format!("{base}/tx/{txid}"), "not sealed"),
        ("table as of", format!("{base}/table/orders?at=now"), "open"),
        (
            "revert plan",
            format!("{base}/revert?tx={txid}"),
            "needs an operator token",
        ),
        ("revert", format!("{base}/revert"), "Choose what to revert"),
        ("login", format!("{base}/login"), "Token"),
    ];
    // axe-core on every page: any violation fails.
    let urls: Vec<String> = pages.iter().map(|(_, url, _)| url.clone()).collect();
    let violations = tokio::task::spawn_blocking(move || axe_violations(&urls))
        .await
        .unwrap();
    for (name, url, _) in &pages {
        let found = violations[url.as_str()]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: not checked by axe: {violations}"));
        assert!(
            found.is_empty(),
            "{name}: axe-core finds {}",
            serde_json::to_string_pretty(found).unwrap()
        );
    }
    let dir = std::env::var_os("PGTRAIL_SCREENSHOTS").map(std::path::PathBuf::from);
    for (name, url, expected) in pages {
        let dom = tokio::task::spawn_blocking({
            let url = url.clone();
            move || chromium_dom(&url)
        })
        .await
        .unwrap();
        assert!(dom.contains(expected), "{name}: `{expected}` not in {dom}");
        accessible(&dom, name);
        if let Some(dir) = dir.clone() {
            // Off the runtime's thread: the server answers on it.
            tokio::task::spawn_blocking(move || {
                screenshot(&dir, name, &url, "1100,800");
                if matches!(name, "timeline" | "row") {
                    screenshot(&dir, &format!("{name} phone"), &url, "390,844");
                }
            })
            .await
            .unwrap();
        }
    }
}

/// `PGTRAIL_SCREENSHOTS=docs/screenshots`: each page as a PNG, for the docs
/// (the timeline and a row also as a phone shows them).
fn screenshot(dir: &std::path::Path, name: &str, url: &str, size: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let file = dir.join(format!("{}.png", name.replace(' ', "-")));
    let status = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--window-size={size}"),
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", file.display()),
            url,
        ])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn the_revert_page_takes_every_selector_of_the_cli_including_a_context_key() {
    let db = shop().await;
    // One request (r-9) changed both tables; a migration renamed a status.
    db.client
        .batch_execute(
            "BEGIN;
             SELECT pgtrail.set_context(actor_name => 'mallory', extra => '{\"request_id\": \"r-9\"}');
             UPDATE users SET name = 'Mallory was here' WHERE id = 2;
             UPDATE orders SET status = 'void' WHERE user_id = 2;
             COMMIT;
             BEGIN;
             SELECT pgtrail.set_context(actor_name => 'deploy', extra => '{\"migration\": \"0042_rename_open\"}');
             UPDATE orders SET status = 'opened' WHERE status = 'open';
             COMMIT;",
        )
        .await
        .unwrap();
    let server = start(&db, false).await;
    let plan = |query: String, token: &'static str| {
        let addr = server.addr;
        async move { get(addr, &format!("/api/v1/revert/plan?{query}"), token).await }
    };

    // A context key in a window: both of the request's rows.
    let by_request = plan("context=request_id%3Dr-9&since=1h%20ago".into(), READER).await;
    assert_eq!(by_request.status, 200, "{}", by_request.body);
    let by_request = by_request.json();
    assert_eq!(by_request["rows"], 2, "{by_request}");
    assert_eq!(by_request["selector"]["context"]["request_id"], "r-9");
    // Kept to one table: only the user.
    let only_users = plan(
        "context=request_id%3Dr-9&since=1h%20ago&only=users".into(),
        READER,
    )
    .await
    .json();
    assert_eq!(only_users["rows"], 1, "{only_users}");
    // A window long before the request: the CLI's message, nothing matches.
    let before = plan(
        "context=request_id%3Dr-9&since=2000-01-01&until=2000-01-02".into(),
        READER,
    )
    .await;
    assert_eq!(before.status, 400, "{}", before.body);
    assert!(
        before.body.contains("no recorded change matches"),
        "{}",
        before.body
    );
    // `migration` is the context key migration.
    let migration = plan("migration=0042_rename_open&since=1h%20ago".into(), READER)
        .await
        .json();
    assert_eq!(migration["selector"]["context"]["migration"], "0042_rename_open");
    assert_eq!(migration["rows"], 1, "{migration}");

    // Bad selections are refused with the CLI's kind of message.
    for (query, expected) in [
        ("context=request_id%3Dr-9", "need `since`"),
        ("context=request_id&since=1h%20ago", "key=value"),
        ("tx=1&actor=ann&since=1h%20ago", "exactly one of"),
        ("", "say what to revert"),
        ("context=request_id%3Dr-9&since=1h%20ago&max_rows=0", "`max_rows`"),
    ] {
        let refused = plan(query.into(), READER).await;
        assert_eq!(refused.status, 400, "{query}: {}", refused.body);
        assert!(refused.body.contains(expected), "{query}: {}", refused.body);
    }
    // The cap of the CLI's --max-rows: a selection over it is refused.
    let capped = plan(
        "context=request_id%3Dr-9&since=1h%20ago&max_rows=1".into(),
        READER,
    )
    .await;
    assert_eq!(capped.status, 400, "{}", capped.body);
    assert!(capped.body.contains("more than the cap of 1"), "{}", capped.body);

    // The page without a selection: the form with every selector.
    let cookie = format!("pgtrail_token={OPERATOR}");
    let page = |path: String| {
        let (addr, cookie) = (server.addr, cookie.clone());
        async move { request(addr, "GET", &path, &[("Cookie", &cookie)], "").await }
    };
    let empty = page("/revert".into()).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    for field in [
        "tx",
        "table",
        "key",
        "to",
        "after_change",
        "actor",
        "context",
        "migration",
        "since",
        "until",
        "only",
        "max_rows",
        "conflicts",
    ] {
        assert!(
            empty.body.contains(&format!("name=\"{field}\"")),
            "no field {field}: {}",
            empty.body
        );
    }
    assert!(!empty.body.contains("name=\"plan_id\""));

    // The form as a browser sends it (empty fields included, a comma list
    // of tables): the plan, and an operator applies it.
    let form = "/revert?tx=&table=&key=&to=&after_change=&actor=&context=request_id%3Dr-9&context=\
                &migration=&since=1h+ago&until=&only=users%2C+orders&max_rows=&conflicts=refuse";
    let planned = page(form.into()).await;
    assert_eq!(planned.status, 200, "{}", planned.body);
    assert!(planned.body.contains("2 row(s) written"), "{}", planned.body);
    assert!(
        planned.body.contains("value=\"request_id=r-9\""),
        "the form keeps the selection: {}",
        planned.body
    );
    let body = format!(
        "context=request_id%3Dr-9&since=1h+ago&only=users&only=orders&conflicts=refuse&plan_id={}&csrf={}&reason=undo%20r-9",
        hidden(&planned.body, "plan_id"),
        hidden(&planned.body, "csrf")
    );
    let origin = format!("http://{}", server.addr);
    let done = request(
        server.addr,
        "POST",
        "/revert",
        &[
            ("Cookie", &cookie),
            ("Origin", &origin),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &body,
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let row = db
        .client
        .query_one(
            "SELECT (SELECT name FROM users WHERE id = 2), (SELECT string_agg(status, ',' ORDER BY id) FROM orders)",
            &[],
        )
        .await
        .unwrap();
    // The request's changes undone (the migration's left as they are).
    assert_eq!(row.get::<_, String>(0), "Bob");
    assert_eq!(row.get::<_, String>(1), "opened,open");
}
