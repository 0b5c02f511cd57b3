"""Django: a middleware that takes who is acting from the request, and
``audited_atomic``, ``transaction.atomic`` with that context set.

settings.py::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "pgtrail_context.django.AuditContextMiddleware"]
    # optional: a function (request) -> dict of context fields, or its dotted path
    PGTRAIL_CONTEXT_FROM_REQUEST = "myapp.audit.context_from_request"
    # optional: run every view in audited_atomic (rolled back when the view raises)
    PGTRAIL_ATOMIC_REQUESTS = True
"""

from __future__ import annotations

import sys
from contextlib import ContextDecorator
from contextvars import ContextVar
from typing import Any, Callable, Optional

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils.module_loading import import_string

from .core import audit_settings

__all__ = ["AuditContextMiddleware", "audited_atomic", "context_from_request", "current_audit_context"]

_current: ContextVar[Optional[dict]] = ContextVar("pgtrail_audit_context", default=None)


def current_audit_context() -> dict:
    """The context of the request being served (empty outside one)."""
    return dict(_current.get() or {})


def context_from_request(request: Any) -> dict:
    """The default: the authenticated user (``pk``, e-mail or username) as
    actor, the X-Request-ID header, the client's address and user agent."""
    context: dict = {}
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        context["actor_id"] = user.pk
        context["actor_name"] = getattr(user, "email", None) or user.get_username()
        context["actor_type"] = "user"
    request_id = request.headers.get("X-Request-ID")
    if request_id:
        context["request_id"] = request_id
    if request.META.get("REMOTE_ADDR"):
        context["ip"] = request.META["REMOTE_ADDR"]
    if request.headers.get("User-Agent"):
        context["user_agent"] = request.headers["User-Agent"]
    return context


def _builder() -> Callable[[Any], dict]:
    configured = getattr(settings, "PGTRAIL_CONTEXT_FROM_REQUEST", None)
    if configured is None:
        return context_from_request
    return import_string(configured) if isinstance(configured, str) else configured


class AuditContextMiddleware:
    """Builds the request's context (``request.audit_context``) for
    ``audited_atomic`` to set; with ``PGTRAIL_ATOMIC_REQUESTS = True`` it also
    runs each view in ``audited_atomic()``. Place it after
    AuthenticationMiddleware so that ``request.user`` is known."""

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.build = _builder()
        self.atomic = bool(getattr(settings, "PGTRAIL_ATOMIC_REQUESTS", False))

    def __call__(self, request: Any) -> Any:
        context = dict(self.build(request) or {})
        request.audit_context = context
        token = _current.set(context)
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)

    def process_view(self, request: Any, view_func: Callable, view_args: tuple, view_kwargs: dict) -> Any:
        if not self.atomic or getattr(view_func, "_pgtrail_non_atomic", False):
            return None
        with audited_atomic():
            return view_func(request, *view_args, **view_kwargs)


class audited_atomic(ContextDecorator):
    """``transaction.atomic`` that sets the current request's context (see
    AuditContextMiddleware), overridden by the fields given here, in the
    transaction: as a context manager or a decorator::

        with audited_atomic(reason="suspended for spam"):
            user.status = "suspended"; user.save()

        @audited_atomic(actor_type="system", actor_name="nightly-cleanup")
        def cleanup(): ...
    """

    def __init__(self, using: Optional[str] = None, savepoint: bool = True, durable: bool = False, **fields: Any) -> None:
        if callable(using):  # used bare: @audited_atomic
            raise TypeError("use @audited_atomic() with parentheses")
        self.using = using or DEFAULT_DB_ALIAS
        self.savepoint = savepoint
        self.durable = durable
        self.fields = fields
        audit_settings(**fields)  # wrong fields fail here, not mid-request
        self._blocks: list = []

    def _recreate_cm(self) -> "audited_atomic":
        # A decorated function gets a fresh block per call (threads, recursion).
        return audited_atomic(self.using, self.savepoint, self.durable, **self.fields)

    def __enter__(self) -> "audited_atomic":
        context = {**current_audit_context(), **self.fields}
        pairs = audit_settings(**context)
        block = transaction.atomic(using=self.using, savepoint=self.savepoint, durable=self.durable)
        block.__enter__()
        self._blocks.append(block)
        if pairs:
            try:
                calls = ", ".join("pg_catalog.set_config(%s, %s, true)" for _ in pairs)
                with connections[self.using].cursor() as cursor:
                    cursor.execute(f"SELECT {calls}", [item for pair in pairs for item in pair])
            except BaseException:
                self._blocks.pop().__exit__(*sys.exc_info())
                raise
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._blocks.pop().__exit__(*exc)
