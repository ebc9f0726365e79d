"""What every gateway of the service must get right, apart from the screens.

- the person's address and user agent in each call's ``client`` (``client_info``);
- a request id per browser request, sent as ``x-request-id`` (``RequestContext``);
- a CSRF token per session, in every form, checked on every POST (``checked_form``);
- the trusted-device token in a ``Secure; HttpOnly; SameSite=Strict`` cookie;
- no NIR, password, code or token in a URL or a log line.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

__all__ = [
    "DEVICE_COOKIE",
    "RequestContext",
    "checked_form",
    "client_info",
    "csrf_token",
    "forbidden",
    "request_id",
    "set_device_cookie",
]

log = logging.getLogger("ameli_portal")

DEVICE_COOKIE = "ameli_device"
USER_AGENT_MAX = 512  # the service refuses a longer user agent (README, "Input validation")


# -- what the portal tells the service about the browser -------------------------------------


def client_info(request: Request) -> dict[str, str]:
    """The person's address and user agent, as the keyword arguments of the client's calls.

    Gateway: the address must be the *person's*, never the portal's, or every person behind
    the portal shares one wrong-entry count (README, "Client regulation"). Here it is the
    TCP peer; behind a load balancer, ``PORTAL_TRUSTED_PROXIES`` (uvicorn's
    ``forwarded_allow_ips``) makes it the ``X-Forwarded-For`` hop that the balancer added,
    never a header the browser could write itself.
    """
    peer = request.client.host if request.client else ""
    try:
        ip = str(ipaddress.ip_address(peer))
    except ValueError:
        ip = ""  # not an address (a test transport): the service then does not regulate
    # The service refuses a user agent over 512 characters or with a control character:
    # the portal keeps the printable part, so that a browser's header never blocks a login.
    agent = "".join(c for c in request.headers.get("user-agent", "") if c.isprintable())
    return {"client_ip": ip, "user_agent": agent[:USER_AGENT_MAX]}


def request_id(request: Request) -> str:
    """This browser request's id, sent to the service as ``x-request-id``."""
    return str(request.state.request_id)


# -- CSRF: one token per session, in every form, checked on every POST ------------------------


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created with the session (signed with it)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


async def checked_form(request: Request) -> dict[str, str] | None:
    """The posted form, or ``None`` when its CSRF token is not the session's."""
    form = await request.form()
    fields = {name: value for name, value in form.items() if isinstance(value, str)}
    expected = request.session.get("csrf")
    sent = fields.get("csrf", "")
    # Bytes: compare_digest refuses a str that is not ASCII, and the field is the browser's.
    if not isinstance(expected, str) or not secrets.compare_digest(
        sent.encode(), expected.encode()
    ):
        return None
    return fields


def forbidden() -> Response:
    """The answer to a form without the session's CSRF token."""
    return PlainTextResponse("Formulaire expiré ou invalide.", status_code=403)


def set_device_cookie(response: Response, token: str, expires: Timestamp) -> None:
    """Gateway: the device token is a credential. ``Secure`` (HTTPS only; browsers treat
    http://localhost and 127.0.0.1 as secure too), ``HttpOnly`` (no script reads it),
    ``SameSite=Strict`` (never sent by another site's page), kept as long as the service trusts
    the device (6 months)."""
    until = expires.ToDatetime(UTC)
    max_age = max(0, int((until - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        DEVICE_COOKIE, token, max_age=max_age, secure=True, httponly=True, samesite="strict"
    )


# -- per request: an id, a log line, the headers of a page ------------------------------------


class RequestContext(BaseHTTPMiddleware):
    """A request id per browser request, one log line per request, and the pages' headers."""

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Gateway: generated here, never taken from the browser; the client sends it as
        # x-request-id, so the service's log lines and audit rows of this page share it.
        request.state.request_id = str(uuid.uuid4())
        response = await call_next(request)
        response.headers["X-Request-Id"] = request.state.request_id
        response.headers["Cache-Control"] = "no-store"  # pages hold a masked email, a CSRF token
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Content-Type-Options"] = "nosniff"
        # The path only: every form is a POST, so no NIR, code or token is ever in a URL.
        log.info(
            "%s %s %s request_id=%s",
            request.method,
            request.url.path,
            response.status_code,
            request.state.request_id,
        )
        return response
