"""The context as transaction-local settings, set with set_config(..., true).

Every value goes as a text bind parameter, so ids of any type (int, UUID,
str) reach pgtrail as text: no smallint or uuid overload to match, no
Jsonb() wrapper to remember.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, Iterator, Mapping, Optional

from psycopg import pq

__all__ = ["AuditContextError", "audit_context", "audit_settings", "set_audit_context"]

# The context fields with settings (and trail columns) of their own.
FIELDS = ("actor_id", "actor_name", "actor_type", "reason")

# A custom setting name PostgreSQL accepts: prefix.name.
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)+$")


class AuditContextError(ValueError):
    """The context cannot be set: a wrong value, or no transaction to hold it."""


def _text(name: str, value: Any) -> str:
    if isinstance(value, (dict, list, tuple, set, bytes)):
        raise AuditContextError(
            f"pgtrail_context: {name} must be a scalar (str, int, UUID, ...), got {type(value).__name__}; "
            "put structured values in extra fields"
        )
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def audit_settings(
    actor_id: Any = None,
    actor_name: Any = None,
    actor_type: Any = None,
    reason: Any = None,
    *,
    settings: Optional[Mapping[str, Any]] = None,
    **extra: Any,
) -> list[tuple[str, str]]:
    """The settings a context stands for, as (name, value) pairs.

    pgtrail.actor_id, actor_name, actor_type and reason; pgtrail.context
    holding every other field as one JSON object (request_id,
    business_process, ip, ...); then ``settings``, other settings such as
    the ones pgtrail.toml's [context] maps (``{"app.actor_email": ...}``).
    None values are left out.
    """
    pairs: list[tuple[str, str]] = []
    for name, value in zip(FIELDS, (actor_id, actor_name, actor_type, reason)):
        if value is not None:
            pairs.append((f"pgtrail.{name}", _text(name, value)))
    extra = {key: value for key, value in extra.items() if value is not None}
    if extra:
        pairs.append(("pgtrail.context", json.dumps(extra, default=_json_default)))
    for name, value in (settings or {}).items():
        if not isinstance(name, str) or not _SETTING_NAME.match(name):
            raise AuditContextError(
                f"pgtrail_context: setting {name!r} is not a custom setting name; use prefix.name, such as app.actor_email"
            )
        if value is not None:
            pairs.append((name, _text(f"settings[{name!r}]", value)))
    return pairs


def _statement(pairs: list[tuple[str, str]]) -> tuple[str, list[str]]:
    calls = ", ".join("pg_catalog.set_config(%s, %s, true)" for _ in pairs)
    return f"SELECT {calls}", [item for pair in pairs for item in pair]


def set_audit_context(conn: Any, *args: Any, **kwargs: Any) -> None:
    """Sets the context in the transaction ``conn`` (a psycopg 3 connection
    or cursor) is in. In autocommit mode outside a transaction block the
    settings would end with their own statement, so that is refused."""
    pairs = audit_settings(*args, **kwargs)
    if not pairs:
        return
    connection = getattr(conn, "connection", conn)
    status = connection.info.transaction_status
    if connection.autocommit and status == pq.TransactionStatus.IDLE:
        raise AuditContextError(
            "pgtrail_context: the connection is in autocommit mode outside a transaction, so the context "
            "would be lost at once; use `with audit_context(conn, ...)` or `with conn.transaction():`"
        )
    query, params = _statement(pairs)
    conn.execute(query, params)


@contextmanager
def audit_context(conn: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
    """Opens a transaction (``conn.transaction()``) with the context set and
    yields the connection; commits when the block ends, rolls back when it
    raises. Inside a transaction already open it is a savepoint, and the
    context lasts until that transaction ends."""
    pairs = audit_settings(*args, **kwargs)  # wrong input fails before BEGIN
    with conn.transaction():
        if pairs:
            query, params = _statement(pairs)
            conn.execute(query, params)
        yield conn
