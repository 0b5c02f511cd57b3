"""pgtrail-context: say who is acting and why in pgtrail's audit trail.

psycopg 3: ``audit_context(conn, actor_id=..., ...)`` opens a transaction with
the context set; ``set_audit_context(conn, ...)`` sets it in the transaction
already open. Django: ``pgtrail_context.django`` (middleware and
``audited_atomic``).
"""

from .core import AuditContextError, audit_context, audit_settings, set_audit_context

__all__ = ["AuditContextError", "audit_context", "audit_settings", "set_audit_context"]
