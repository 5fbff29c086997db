"""What a route depends on: the service, who is asking (bearer token or address), the admin check."""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Depends, Request

from .errors import APIError
from .service import Service


def service(request: Request) -> Service:
    return request.app.state.service


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _matches(token: str | None, keys) -> bool:
    return token is not None and any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)


def client_id(request: Request, svc: Service = Depends(service)) -> str:
    """Who is asking: the hash of the bearer token, else the peer address. With API keys configured, a
    missing or unknown token is refused (the admin key is accepted too)."""
    config = svc.config
    token = _token(request)
    accepted = (*config.api_keys, *((config.admin_key,) if config.admin_key else ()))
    if config.api_keys and not _matches(token, accepted):
        raise APIError(
            401, "Authorization: a valid bearer token is required (Authorization: Bearer KEY)", code="invalid_api_key"
        )
    if token is not None:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:24]
    return "ip:" + (request.client.host if request.client else "unknown")


def require_admin(request: Request, svc: Service = Depends(service)) -> None:
    if svc.config.admin_key is None:
        raise APIError(
            403, "admin routes are disabled: start the server with an admin key (--admin-key)", code="disabled"
        )
    if not _matches(_token(request), (svc.config.admin_key,)):
        raise APIError(401, "Authorization: the admin bearer token is required", code="invalid_api_key")
