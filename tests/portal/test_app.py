"""The portal's gateway duties, without a browser: a fake AuthClient records what it is sent."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import httpx
import pytest
import pytest_asyncio
from ameli.auth import AuthClient, WrongEntry
from ameli.auth.v1 import auth_pb2
from ameli_portal.app import DEVICE_COOKIE, PortalConfig, create_app
from google.protobuf.timestamp_pb2 import Timestamp

NIR = "180017511200169"
PASSWORD = "Mot-de-passe-1"
CODE = "428519"
LOGIN_ID = "login-of-the-session"
TOKEN = "device-token-0123456789"
WRONG = "Les informations saisies sont erronées. Merci de vérifier votre saisie."


class FakeAuth:
    """The three calls of the web flow, each recorded with its keyword arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.wrong_code = False

    async def check_credentials(self, **sent: Any) -> auth_pb2.CheckCredentialsResponse:
        self.calls.append(("check_credentials", sent))
        required = auth_pb2.CodeRequired(login_id=LOGIN_ID, masked_email="a***@e***.fr")
        return auth_pb2.CheckCredentialsResponse(code_required=required)

    async def request_code(self, **sent: Any) -> auth_pb2.RequestCodeResponse:
        self.calls.append(("request_code", sent))
        return auth_pb2.RequestCodeResponse(masked_email="a***@e***.fr", codes_remaining=4)

    async def verify_code(self, **sent: Any) -> auth_pb2.VerifyCodeResponse:
        self.calls.append(("verify_code", sent))
        if self.wrong_code:
            raise WrongEntry(grpc.StatusCode.UNAUTHENTICATED, "INVALID_CODE", WRONG, 2)
        expires = Timestamp()
        expires.GetCurrentTime()
        expires.seconds += 180 * 86400
        return auth_pb2.VerifyCodeResponse(
            authenticated=auth_pb2.Authenticated(account_id="account-1"),
            device_token=TOKEN,
            device_trust_expire_time=expires,
        )

    async def close(self) -> None:
        pass


@pytest.fixture
def fake() -> FakeAuth:
    return FakeAuth()


@pytest_asyncio.fixture
async def browser(fake: FakeAuth) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTPS client of the app (started), so that the Secure cookies travel as in a browser."""
    app = create_app(PortalConfig(session_secret="k" * 32), client=cast(AuthClient, fake))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="https://testserver", follow_redirects=True
        ) as client,
    ):
        yield client


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def log_in_and_send_code(browser: httpx.AsyncClient) -> str:
    """Steps 0 and 1; returns the CSRF token of the code form."""
    token = csrf((await browser.get("/")).text)
    await browser.post("/connexion", data={"csrf": token, "nir": NIR, "password": PASSWORD})
    page = await browser.post("/code/envoi", data={"csrf": token})
    return csrf(page.text)


async def test_a_post_without_the_session_csrf_token_is_refused(
    browser: httpx.AsyncClient, fake: FakeAuth
) -> None:
    """A form without the session's CSRF token is refused 403 and nothing reaches the service."""
    await browser.get("/")
    missing = await browser.post("/connexion", data={"nir": NIR, "password": PASSWORD})
    forged = await browser.post("/connexion", data={"csrf": "x" * 43, "nir": NIR, "password": "p"})
    odd = await browser.post("/connexion", data={"csrf": "é", "nir": NIR, "password": "p"})
    assert (missing.status_code, forged.status_code, odd.status_code) == (403, 403, 403)
    assert fake.calls == []


async def test_the_client_and_a_fresh_request_id_reach_the_service(
    browser: httpx.AsyncClient, fake: FakeAuth
) -> None:
    """Each call carries the person's address (the peer, not a header the browser wrote),
    user agent (printable, 512 characters at most) and the id of the browser request,
    which is also that response's X-Request-Id."""
    token = csrf((await browser.get("/")).text)
    agent = "Mozilla/5.0 \x7f" + "x" * 600
    answer = await browser.post(
        "/connexion",
        data={"csrf": token, "nir": NIR, "password": PASSWORD},
        # Written by the browser, not by a trusted proxy: ignored.
        headers={"user-agent": agent, "x-forwarded-for": "198.51.100.1"},
        follow_redirects=False,
    )
    sent = fake.calls[0][1]
    assert sent["user_agent"] == ("Mozilla/5.0 " + "x" * 600)[:512]
    assert sent["client_ip"] == "203.0.113.7"
    assert sent["channel"] == auth_pb2.CHANNEL_WEB
    assert sent["request_id"] == answer.headers["x-request-id"]
    again = await browser.get("/code")
    assert again.headers["x-request-id"] != answer.headers["x-request-id"]


async def test_the_login_id_comes_from_the_session_never_from_the_form(
    browser: httpx.AsyncClient, fake: FakeAuth
) -> None:
    """A login id posted with the code is ignored: the session's is the one verified."""
    token = await log_in_and_send_code(browser)
    await browser.post("/code", data={"csrf": token, "code": CODE, "login_id": "someone-else"})
    assert fake.calls[-1][0] == "verify_code"
    assert fake.calls[-1][1]["login_id"] == LOGIN_ID


async def test_the_device_token_is_a_strict_cookie_sent_back_on_the_next_login(
    browser: httpx.AsyncClient, fake: FakeAuth
) -> None:
    """The ticked box's token is set Secure, HttpOnly, SameSite=Strict, and sent back."""
    token = await log_in_and_send_code(browser)
    done = await browser.post(
        "/code",
        data={"csrf": token, "code": CODE, "personal_computer": "on"},
        follow_redirects=False,
    )
    cookie = next(
        value for value in done.headers.get_list("set-cookie") if value.startswith(DEVICE_COOKIE)
    )
    assert {"secure", "httponly", "samesite=strict"} <= {
        part.strip().lower() for part in cookie.split(";")
    }
    assert fake.calls[-1][1]["trust_device"] is True
    token = csrf((await browser.get("/")).text)
    await browser.post("/connexion", data={"csrf": token, "nir": NIR, "password": PASSWORD})
    assert fake.calls[-1][1]["device_token"] == TOKEN


async def test_no_nir_password_code_or_token_in_a_url_or_a_log(
    browser: httpx.AsyncClient, fake: FakeAuth, caplog: pytest.LogCaptureFixture
) -> None:
    """The whole flow, a wrong code included, logs paths and reasons, never a secret."""
    caplog.set_level(logging.DEBUG)
    token = await log_in_and_send_code(browser)
    fake.wrong_code = True
    wrong = await browser.post("/code", data={"csrf": token, "code": "000000"})
    assert WRONG in wrong.text
    fake.wrong_code = False
    done = await browser.post(
        "/code", data={"csrf": token, "code": CODE, "personal_computer": "on"}
    )
    assert done.url.path == "/compte"
    logged = caplog.text + " ".join(str(response.url) for response in done.history)
    assert "refused INVALID_CODE" in caplog.text
    for secret in (NIR, PASSWORD, CODE, "000000", LOGIN_ID, TOKEN):
        assert secret not in logged
