"""What stands between the network and the routes: the Host allow-list, body limits counted
while the body streams in, one-line 422 messages and 500s without internals.

Both middlewares are pure ASGI (no request buffering). `BodyLimit` counts the bytes of the
``http.request`` messages as the app reads them -- ``Content-Length`` or chunked alike -- and
answers 413 (``Connection: close``) as soon as a body passes the limit of its route: a JSON
request gets `MAX_JSON_BODY_BYTES`, a form on an upload route the upload limit plus
`FORM_OVERHEAD`; a declared ``Content-Length`` over the limit is answered before any of the
body is read. `HostAllowList` answers 400 to a ``Host`` header not on the list (DNS rebinding:
a web page on another name must not reach a server on localhost).
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Collection, Iterable

from polymodal.core.errors import UsageError
from polymodal.data.limits import MAX_JSON_BODY_BYTES
from polymodal.serve.common import FORM_OVERHEAD, Guard

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
log = logging.getLogger("polymodal.serve")


def _header(scope: dict, name: bytes) -> str:
    for k, v in scope.get("headers", ()):
        if k == name:
            return v.decode("latin-1")
    return ""


async def _answer(send: Any, status: int, detail: str, close: bool = False) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is never read: the connection cannot be reused
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    """Raised into the app by `BodyLimit`'s ``receive`` once the body is over the limit."""


class BodyLimit:
    """Pure ASGI middleware: 413 as soon as a request body passes its route's limit."""

    def __init__(self, app: Any, upload_limit: int, upload_mb: float,
                 upload_paths: Collection[str], json_limit: int = MAX_JSON_BODY_BYTES):
        self.app, self.upload_limit, self.upload_mb = app, upload_limit, upload_mb
        self.upload_paths, self.json_limit = frozenset(upload_paths), json_limit

    def limit(self, scope: dict) -> tuple[int, str]:
        """``(bytes, message)`` for this request: forms on upload routes get the upload limit,
        everything else the JSON limit."""
        ctype = _header(scope, b"content-type").lower()
        if scope.get("path") in self.upload_paths and ctype.startswith(FORM_TYPES):
            return self.upload_limit, f"upload larger than {self.upload_mb:g} MB"
        return self.json_limit, (f"request body larger than the {self.json_limit / 2**20:g} MB "
                                 "limit of a JSON request")

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, what = self.limit(scope)
        declared = _header(scope, b"content-length").strip()
        if declared.isdigit() and int(declared) > limit:
            return await _answer(send, 413, f"{what} ({int(declared) / 2**20:.1f} MB declared)",
                                 close=True)
        seen, over, started = 0, False, False

        async def counted() -> dict:
            nonlocal seen, over
            if over:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise BodyTooLarge
            return message

        async def watched(message: dict) -> None:
            nonlocal started
            if over:  # whatever the app answers to a cut body (400, 422, ...) is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _answer(send, 413, f"{what} (stopped reading at {seen / 2**20:.1f} MB)",
                          close=True)


def host_name(value: str) -> str:
    """The host of a ``Host`` header, lower-case, without port or trailing dot
    (``[::1]:8000`` -> ``::1``)."""
    v = value.strip().lower()
    if v.startswith("["):
        end = v.find("]")
        return v[1:end] if end > 0 else v
    if v.count(":") == 1:
        v = v.split(":")[0]
    return v.rstrip(".")


def allowed_hosts(extra: Iterable[str] = ()) -> frozenset[str]:
    """`DEFAULT_HOSTS` plus ``extra`` (names or addresses; ``*`` allows every host); a
    `UsageError` for an empty name or one with a space, slash or ``@``."""
    names = set(DEFAULT_HOSTS)
    for h in extra:
        h = str(h).strip()
        if h == "*":
            names.add("*")
            continue
        if not h or any(c in h for c in " /@\\\t"):
            raise UsageError(f"--allow-host {h!r}: give a host name or address (or '*')")
        names.add(host_name(h))
    return frozenset(names)


class HostAllowList:
    """Pure ASGI middleware: 400 ``host not allowed`` for a ``Host`` not in ``hosts``."""

    def __init__(self, app: Any, hosts: frozenset[str]):
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and "*" not in self.hosts:
            host = host_name(_header(scope, b"host"))
            if host not in self.hosts:
                if scope["type"] == "websocket":
                    return await send({"type": "websocket.close", "code": 1008})
                return await _answer(send, 400, f"host not allowed: '{host[:100]}' (start "
                                                "`polymodal serve` with --allow-host NAME)")
        await self.app(scope, receive, send)


def _short(v: Any) -> str:
    r = repr(v)
    if len(r) <= 40:
        return r
    return r[:36] + "…" + (f" ({len(v):,} characters)" if isinstance(v, str) else "")


def validation_message(errors: Iterable[dict]) -> str:
    """One line for pydantic / FastAPI validation errors: ``field: what (got value)``; every
    value shown as a short repr (NaN and infinities included, which JSON cannot carry)."""
    errors = list(errors)
    parts = []
    for e in errors[:3]:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path", "form")]
        field, msg = ".".join(loc) or "body", str(e.get("msg", "invalid value"))
        if e.get("type") == "json_invalid":
            field = "body"
            msg = f"invalid JSON ({(e.get('ctx') or {}).get('error', '?')})"
        elif msg.startswith("Value error, "):  # our validators name the value themselves
            msg = msg[len("Value error, "):]
        elif e.get("type") != "missing" and not isinstance(e.get("input"), (dict, list)):
            msg += f" (got {_short(e.get('input'))})"
        parts.append(msg if msg.startswith(f"{field} ") else f"{field}: {msg}")
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    return "; ".join(parts)


def install(app: Any, guard: Guard, upload_paths: Collection[str],
            hosts: frozenset[str]) -> None:
    """Add the middlewares and the 422 / 500 handlers to ``app``."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    app.add_middleware(BodyLimit, upload_limit=guard.limit + FORM_OVERHEAD,
                       upload_mb=guard.max_upload_mb, upload_paths=upload_paths)
    app.add_middleware(HostAllowList, hosts=hosts)  # added last = runs first

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Any, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Any, exc: Exception) -> JSONResponse:
        rid = uuid.uuid4().hex[:12]
        log.error("request %s (%s %s) failed: %s: %s", rid, request.method, request.url.path,
                  type(exc).__name__, exc, exc_info=(type(exc), exc, exc.__traceback__))
        return JSONResponse({"detail": f"internal error (request id {rid}; the details are in "
                                       "the server log)", "request_id": rid}, status_code=500,
                            headers={"X-Request-ID": rid})
