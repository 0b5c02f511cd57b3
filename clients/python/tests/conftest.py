"""Test support: throwaway databases on the test server (PGTRAIL_TEST_URL,
set by scripts/test, else the local server), pgtrail installed by the real
`pgtrail` binary, every database dropped afterwards."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))  # the package under test, without installing it


def admin_url() -> str:
    return os.environ.get("PGTRAIL_TEST_URL") or "postgres://postgres@127.0.0.1:5432/postgres"


def url_for(name: str) -> str:
    parts = urlsplit(admin_url())
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def pgtrail_bin() -> str:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = Path(os.environ.get("PGTRAIL_BIN", target / "debug" / "pgtrail"))
    if not binary.exists():
        pytest.fail(f"the pgtrail binary is missing at {binary}: run `cargo build -p pgtrail-cli` first (or set PGTRAIL_BIN)")
    return str(binary)


def pgtrail(url: str, toml: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs `pgtrail ARGS --database-url URL` next to a pgtrail.toml holding `toml`."""
    with tempfile.TemporaryDirectory(prefix="pgtrail-py-") as directory:
        Path(directory, "pgtrail.toml").write_text(toml)
        result = subprocess.run(
            [pgtrail_bin(), *args, "--database-url", url], cwd=directory, capture_output=True, text=True
        )
    if check and result.returncode != 0:
        pytest.fail(f"pgtrail {' '.join(args)} failed: {result.stderr}")
    return result


class Database:
    def __init__(self, name: str) -> None:
        self.name = name
        self.url = url_for(name)

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.url, **kwargs)

    def scalar(self, sql: str, params=()):
        with self.connect(autocommit=True) as conn:
            return conn.execute(sql, params).fetchone()[0]


def new_database(schema: str = "") -> Database:
    """A new database on the test server, with `schema` in it."""
    name = f"pgtrail_py_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    database = Database(name)
    if schema:
        with database.connect(autocommit=True) as conn:
            conn.execute(schema)
    return database


def drop_database(database: Database) -> None:
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')


@pytest.fixture
def create_database():
    """A factory: create_database(schema) -> Database, dropped after the test."""
    created: list[Database] = []

    def create(schema: str = "") -> Database:
        created.append(new_database(schema))
        return created[-1]

    yield create
    for database in created:
        drop_database(database)
