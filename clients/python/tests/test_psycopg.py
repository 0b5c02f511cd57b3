"""An app on psycopg 3 says who is acting with audit_context: ids of any
type, extra fields, mapped settings, rollback, and no leak between
transactions on the same connection."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from conftest import pgtrail

from pgtrail_context import AuditContextError, audit_context, set_audit_context

SCHEMA = "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, status text NOT NULL DEFAULT 'active')"
CONFIG = '[context]\nactor_name = ["app.actor_email"]\n'


@pytest.fixture
def db(create_database):
    database = create_database(SCHEMA)
    pgtrail(database.url, CONFIG, "apply")
    return database


def changes(db):
    with db.connect(autocommit=True) as conn:
        return conn.execute(
            "SELECT op, actor_id, actor_name, actor_type, reason, context, new_values "
            "FROM pgtrail.changes WHERE table_name = 'users' ORDER BY id"
        ).fetchall()


def test_the_context_reaches_the_trail_with_ids_of_any_type(db):
    actor_uuid = uuid.uuid4()
    with db.connect() as conn:
        with audit_context(conn, actor_id=42, actor_name="alice@example.com", actor_type="user",
                           reason="signup", request_id="r-1", business_process="onboarding"):
            conn.execute("INSERT INTO users (email) VALUES ('alice@example.com')")
        with audit_context(conn, actor_id=actor_uuid, actor_type="moderator"):
            conn.execute("UPDATE users SET status = 'suspended'")
        with audit_context(conn, actor_id=2**62, settings={"app.actor_email": "bob@example.com"}):
            conn.execute("UPDATE users SET status = 'active'")
    insert, suspend, restore = changes(db)
    assert insert[:5] == ("INSERT", "42", "alice@example.com", "user", "signup")
    assert insert[5]["request_id"] == "r-1" and insert[5]["business_process"] == "onboarding"
    assert suspend[1:4] == (str(actor_uuid), None, "moderator")
    assert restore[1:3] == (str(2**62), "bob@example.com"), "a mapped setting fills actor_name"


def test_an_exception_rolls_back_and_nothing_leaks_to_the_next_transaction(db):
    with db.connect() as conn:
        with pytest.raises(RuntimeError, match="declined"):
            with audit_context(conn, actor_id=7, reason="will fail"):
                conn.execute("INSERT INTO users (email) VALUES ('gone@example.com')")
                raise RuntimeError("payment declined")
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0
        assert conn.execute("SELECT current_setting('pgtrail.actor_id', true)").fetchone()[0] in (None, "")
        conn.rollback()
        with audit_context(conn, actor_name="second"):
            conn.execute("INSERT INTO users (email) VALUES ('kept@example.com')")
    rows = changes(db)
    assert [(r[0], r[1], r[2]) for r in rows] == [("INSERT", None, "second")]


def test_autocommit_connections_get_a_real_transaction(db):
    with db.connect(autocommit=True) as conn:
        with audit_context(conn, actor_id="u-1"):
            conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")
        with pytest.raises(AuditContextError, match="autocommit mode outside a transaction"):
            set_audit_context(conn, actor_id="lost")
        with conn.transaction():
            set_audit_context(conn, actor_id="u-2")
            conn.execute("INSERT INTO users (email) VALUES ('b@example.com')")
    assert [r[1] for r in changes(db)] == ["u-1", "u-2"]


def test_wrong_values_are_refused_before_the_transaction_starts(db):
    with db.connect() as conn:
        with pytest.raises(AuditContextError, match="actor_id must be a scalar"):
            with audit_context(conn, actor_id={"id": 1}):
                pass
        with pytest.raises(AuditContextError, match="not a custom setting name"):
            with audit_context(conn, settings={"nodot": "x"}):
                pass
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
