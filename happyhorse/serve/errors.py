"""Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, for every 4xx and 5xx,
and the request-size guard that turns an oversized body into a 413 before it is parsed."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("happyhorse.serve")

ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class APIError(Exception):
    """A request the server refuses; the message names the parameter, the value and what is allowed."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(status: int, message: str, param=None, code=None, headers=None) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    value = first.get("input")
    shown = repr(value) if value is not None and len(repr(value)) <= 80 else "the given value"
    return f"{param or 'request'}: {first.get('msg', 'invalid value')} (got {shown})", param


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_request: Request, exc: APIError):
        headers = {"Retry-After": "1"} if exc.status == 429 else None
        return error_response(exc.status, exc.message, exc.param, exc.code, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(400, message, param, "invalid_value")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(exc.status_code, str(exc.detail), None, codes.get(exc.status_code), exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request: Request, exc: BodyTooLarge):
        return error_response(413, str(exc), None, "request_too_large")

    async def _unavailable(_request: Request, exc: Exception):
        if (unavailable := as_unavailable(exc)) is None:
            return await _unexpected(_request, exc)
        return error_response(503, str(unavailable), None, "service_unavailable", {"Retry-After": "2"})

    from sqlalchemy.exc import DBAPIError

    from .storage import StorageError

    # registered by class: Starlette's catch-all Exception handler answers and then raises again
    for kind in (Unavailable, DBAPIError, StorageError, *_queue_errors()):
        app.add_exception_handler(kind, _unavailable)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details")


class Unavailable(Exception):
    """What the server depends on (its database, its storage) is unreachable: a 503, never a hang."""


def as_unavailable(exc: BaseException) -> Unavailable | None:
    """The 503 an exception means, if it is the database or the storage being away; None otherwise."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from .storage import StorageError

    if isinstance(exc, Unavailable):
        return exc
    if isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        return Unavailable("the job database is unavailable; try again shortly")
    if isinstance(exc, StorageError):
        return Unavailable("the clip storage is unavailable; try again shortly")
    module = type(exc).__module__ or ""
    if module.startswith(("psycopg", "procrastinate")):  # the shared queue's connection
        return Unavailable("the job queue is unavailable; try again shortly")
    return None


def _queue_errors() -> tuple[type[Exception], ...]:
    """The shared queue's connection errors (psycopg's, procrastinate's), where those are installed."""
    found = []
    try:
        import psycopg

        found.append(psycopg.OperationalError)
    except ImportError:
        pass
    try:
        from procrastinate.exceptions import ConnectorException

        found.append(ConnectorException)
    except ImportError:
        pass
    return tuple(found)


class BodyTooLarge(Exception):
    """Raised while a body streams in past the limit; answered with a 413."""


class RequestGuard:
    """ASGI middleware: refuses bodies over `max_bytes` (by Content-Length, or while streaming when it is
    absent) with a 413, and counts responses by status class for /metrics."""

    def __init__(self, app, max_bytes: int, counters: dict):
        self.app, self.max_bytes, self.counters = app, max_bytes, counters

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def counting_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                key = f"{message['status'] // 100}xx"
                self.counters[key] = self.counters.get(key, 0) + 1
            await send(message)

        length = dict(scope.get("headers") or ()).get(b"content-length")
        try:
            too_big = length is not None and int(length) > self.max_bytes
        except ValueError:
            return await self._refuse(counting_send, 400, "Content-Length: not an integer")
        if too_big:
            return await self._refuse(counting_send, 413, self._message(int(length)))
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self._message(received))
            return message

        try:
            await self.app(scope, limited_receive, counting_send)
        except BodyTooLarge as exc:
            if not started:
                await self._refuse(counting_send, 413, str(exc))

    def _message(self, size: int) -> str:
        return f"request body: {size} bytes exceeds the limit of {self.max_bytes} bytes"

    async def _refuse(self, send, status: int, message: str):
        response = error_response(status, message, None, "request_too_large" if status == 413 else "invalid_value")
        await response({"type": "http"}, None, send)
