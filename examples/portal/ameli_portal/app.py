"""The reference portal: the guide's login screens over ``ameli.auth.AuthClient``.

Three screens, as in the guide: the NIR and password (step 0), « Recevoir un
code de sécurité » (step 1), the code with « Je me connecte avec mon
ordinateur personnel » (step 3). Every refusal of the service is shown in the
red box exactly as it came (``AuthServiceError.message``, the service's
fr-FR ``LocalizedMessage``): the portal never writes a message of its own.

What a gateway must get right is in ``ameli_portal.gateway`` and marked
``Gateway:`` in the comments of both modules.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ameli.auth import AuthClient, AuthServiceError, LoginRefused, ServiceUnavailable, WrongEntry
from ameli.auth import connect as connect_client
from ameli.auth.v1 import auth_pb2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ameli_portal.gateway import (
    DEVICE_COOKIE,
    RequestContext,
    checked_form,
    client_info,
    csrf_token,
    forbidden,
    request_id,
    set_device_cookie,
)

__all__ = ["DEVICE_COOKIE", "PortalConfig", "create_app"]

log = logging.getLogger("ameli_portal")

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

SESSION_COOKIE = "ameli_session"
# A login lives one hour on the service (AMELI_LOGIN_TTL); the session need not outlive it.
SESSION_MAX_AGE = 3600
# Refusals after which the login can go on with another code: the code screen stays.
CODE_SCREEN_REASONS = {"CODE_EXPIRED", "CODE_NOT_REQUESTED"}


@dataclass(frozen=True)
class PortalConfig:
    """Where the service is and how the portal signs its cookies."""

    target: str = "127.0.0.1:50051"
    api_key: str | None = None  # a key of AMELI_PORTAL_API_KEYS: web channel only
    session_secret: str = ""  # signs the session cookie; the same on every portal replica
    ca_file: str | None = None  # TLS to the service, checked against this authority


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    context["csrf"] = csrf_token(request)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def auth(request: Request) -> AuthClient:
    client: AuthClient = request.app.state.auth
    return client


# -- the screens ------------------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    """Step 0: NIR and password."""
    return render(request, "login.html")


async def login(request: Request) -> Response:
    """Step 0 posted: CheckCredentials, with the trusted-device cookie if the browser has one."""
    form = await checked_form(request)
    if form is None:
        return forbidden()
    end_login(request)
    try:
        checked = await auth(request).check_credentials(
            nir=form.get("nir", ""),
            password=form.get("password", ""),
            channel=auth_pb2.CHANNEL_WEB,  # a portal key may claim nothing else
            # Gateway: the token of « je me connecte avec mon ordinateur personnel », sent back.
            device_token=request.cookies.get(DEVICE_COOKIE, ""),
            request_id=request_id(request),
            **client_info(request),
        )
    except AuthServiceError as refusal:
        return refused(request, "login.html", refusal)
    result = checked.WhichOneof("result")
    if result == "code_required":
        # Gateway: the login id stays in the signed session; the page never carries it, so a
        # posted form cannot point the code at another person's login.
        request.session["login_id"] = checked.code_required.login_id
        request.session["masked_email"] = checked.code_required.masked_email
        return RedirectResponse("/code", status_code=303)
    if result == "authenticated":  # a trusted device: no code
        return logged_in(request, checked.authenticated.account_id)
    # A provisional code (an advisor's reset) was typed as the password.
    return render(request, "done.html", setup=True)


async def code_page(request: Request) -> Response:
    """Steps 1 and 3: « Recevoir un code de sécurité », then the code once sent."""
    if "login_id" not in request.session:
        return RedirectResponse("/", status_code=303)
    return render(request, "code.html", **code_context(request))


async def code_screen_form(request: Request) -> tuple[dict[str, str], str] | Response:
    """A form posted from the code screen and the session's login id, or the answer instead:
    403 without the CSRF token, the first screen when no login is under way."""
    form = await checked_form(request)
    if form is None:
        return forbidden()
    login_id = request.session.get("login_id")
    if not isinstance(login_id, str):
        return RedirectResponse("/", status_code=303)
    return form, login_id


async def send_code(request: Request) -> Response:
    """Step 1 posted: RequestCode emails a code (counted in the hourly quota)."""
    posted = await code_screen_form(request)
    if isinstance(posted, Response):
        return posted
    _form, login_id = posted
    try:
        sent = await auth(request).request_code(
            login_id=login_id, request_id=request_id(request), **client_info(request)
        )
    except AuthServiceError as refusal:
        return code_refused(request, refusal)
    request.session["masked_email"] = sent.masked_email
    request.session["code_sent"] = True
    return RedirectResponse("/code", status_code=303)


async def verify_code(request: Request) -> Response:
    """Step 3 posted: VerifyCode; the ticked box asks for a trusted-device token."""
    posted = await code_screen_form(request)
    if isinstance(posted, Response):
        return posted
    form, login_id = posted
    trust = form.get("personal_computer") == "on"
    try:
        verified = await auth(request).verify_code(
            login_id=login_id,
            code=form.get("code", "").replace(" ", ""),
            trust_device=trust,
            request_id=request_id(request),
            **client_info(request),
        )
    except AuthServiceError as refusal:
        return code_refused(request, refusal)
    response = logged_in(request, verified.authenticated.account_id)
    if verified.device_token:
        set_device_cookie(response, verified.device_token, verified.device_trust_expire_time)
    return response


async def account_page(request: Request) -> Response:
    """The account once logged in (the rest of the site, out of this example's scope)."""
    if "account_id" not in request.session:
        return RedirectResponse("/", status_code=303)
    return render(request, "done.html", setup=False)


async def logout(request: Request) -> Response:
    """Ends the session; the trusted-device cookie stays, as the guide promises 6 months."""
    if await checked_form(request) is None:
        return forbidden()
    request.session.clear()
    return RedirectResponse("/", status_code=303)


# -- outcomes ---------------------------------------------------------------------------------


def code_context(request: Request) -> dict[str, Any]:
    return {
        "masked_email": request.session.get("masked_email", ""),
        "code_sent": bool(request.session.get("code_sent")),
    }


def refused(request: Request, template: str, refusal: AuthServiceError, **context: Any) -> Response:
    """The screen again, the service's message in the red box (never one of the portal's)."""
    # Gateway: the log names the reason and the request id, never the NIR, code or token.
    log.info(
        "refused %s request_id=%s", refusal.reason or type(refusal).__name__, refusal.request_id
    )
    return render(request, template, error=refusal.message, **context)


def code_refused(request: Request, refusal: AuthServiceError) -> Response:
    """A wrong code, an expired one or an outage keep the code screen; anything else (a lock,
    the quota, an expired login) ends the login and shows the first screen, as in the guide."""
    if isinstance(refusal, WrongEntry | ServiceUnavailable):
        return refused(request, "code.html", refusal, **code_context(request))
    if isinstance(refusal, LoginRefused) and refusal.reason in CODE_SCREEN_REASONS:
        request.session["code_sent"] = False  # « Recevoir un nouveau code de sécurité »
        return refused(request, "code.html", refusal, **code_context(request), again=True)
    end_login(request)
    return refused(request, "login.html", refusal)


def end_login(request: Request) -> None:
    for key in ("login_id", "masked_email", "code_sent", "account_id"):
        request.session.pop(key, None)


def logged_in(request: Request, account_id: str) -> Response:
    end_login(request)
    # A new CSRF token once logged in, so that one seen before the login is worth nothing after.
    request.session["csrf"] = secrets.token_urlsafe(32)
    request.session["account_id"] = account_id
    return RedirectResponse("/compte", status_code=303)


# -- the application --------------------------------------------------------------------------


def create_app(config: PortalConfig, client: AuthClient | None = None) -> Starlette:
    """The portal; ``client`` replaces the one ``config`` would open (tests)."""
    if len(config.session_secret) < 32:
        raise ValueError("the session secret must be at least 32 characters")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The channel belongs to the server's event loop: opened at start, closed at stop.
        app.state.auth = client or connect_client(
            config.target, api_key=config.api_key, ca_file=config.ca_file
        )
        try:
            yield
        finally:
            await app.state.auth.close()

    routes = [
        Route("/", login_page, methods=["GET"]),
        Route("/connexion", login, methods=["POST"]),
        Route("/code", code_page, methods=["GET"]),
        Route("/code", verify_code, methods=["POST"]),
        Route("/code/envoi", send_code, methods=["POST"]),
        Route("/compte", account_page, methods=["GET"]),
        Route("/deconnexion", logout, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(RequestContext),
        # Gateway: the session (CSRF token, login id, account) is a signed cookie, Secure,
        # HttpOnly and SameSite=Strict like the device's; the browser can read it but not
        # change it. A server-side store (Redis) would keep the login id off the browser.
        Middleware(
            SessionMiddleware,
            secret_key=config.session_secret,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            same_site="strict",
            https_only=True,
        ),
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
