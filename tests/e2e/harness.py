"""A real AuthService on 127.0.0.1:0, talked to only through the shipped stubs.

``ServiceUnderTest`` owns the server, its settings, its clock and an aiosmtpd
server that receives the security codes; ``restart()`` builds a new process
state on the same database and store, as a deployment would (the embedded
in-process store is handed over, as if it had been Redis), optionally with
other settings (a rotated secret key). Tests move the
server's clock (``service.clock.advance(minutes=15)``) instead of sleeping.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from ameli.auth.v1 import auth_pb2, auth_pb2_grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from ameli_grpc.accounts_import import AccountRow, load_accounts
from ameli_grpc.adapters.memory_challenge_store import MemoryChallengeStore
from ameli_grpc.adapters.sql.repositories import SqlAccountRepository, SqlIdentityRegistry
from ameli_grpc.adapters.sql.schema import audit_events
from ameli_grpc.bootstrap import Container, build_container, server_options
from ameli_grpc.config import Settings
from ameli_grpc.domain.model import Affiliation
from ameli_grpc.server.app import RunningServer, start_server
from tests.support.clock import AdjustableClock
from tests.support.databases import rows
from tests.support.mail import SmtpTestServer, extract_code

PORTAL_KEY = "portal-test-key"
MOBILE_KEY = "mobile-test-key"
ADVISOR_KEY = "advisor-test-key"
PASSWORD = "Bon-Mot-de-Passe-1"
EMAIL = "toto@test.com"


@dataclass
class Refusal:
    """A refusal as a client reads it with ``rpc_status.from_call``."""

    code: grpc.StatusCode
    status: status_pb2.Status

    def detail(self, kind: type[Any]) -> Any:
        for packed in self.status.details:
            if packed.Is(kind.DESCRIPTOR):
                value = kind()
                packed.Unpack(value)
                return value
        return None

    @property
    def reason(self) -> str:
        return str(self.detail(error_details_pb2.ErrorInfo).reason)

    @property
    def message(self) -> str:
        localized = self.detail(error_details_pb2.LocalizedMessage)
        assert localized.locale == "fr-FR"
        return str(localized.message)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.detail(error_details_pb2.ErrorInfo).metadata)


async def refused(call: Awaitable[object]) -> Refusal:
    """Await a call that must fail; return its rich status."""
    try:
        response = await call
    except grpc.aio.AioRpcError as error:
        # from_call reads only code(), details() and trailing_metadata(), which an AioRpcError
        # has; its stub asks for a synchronous grpc.Call.
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
        if status is None:
            message = f"{error.code()} without rich status: {error.details()}"
            raise AssertionError(message) from error
        return Refusal(error.code(), status)
    raise AssertionError(f"expected a refusal, got {response}")


@dataclass
class ServiceUnderTest:
    settings: Settings
    smtp: SmtpTestServer
    container: Container | None = None
    running: RunningServer | None = None
    clock: AdjustableClock = field(default_factory=AdjustableClock)
    memory_store: MemoryChallengeStore | None = None
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    portal: auth_pb2_grpc.AuthServiceAsyncStub = field(init=False)
    mobile: auth_pb2_grpc.AuthServiceAsyncStub = field(init=False)
    advisor: auth_pb2_grpc.AuthServiceAsyncStub = field(init=False)

    @property
    def address(self) -> str:
        assert self.running is not None
        return f"127.0.0.1:{self.running.port}"

    async def start(self) -> None:
        self.container = await build_container(
            self.settings, migrate=False, clock=self.clock, memory_store=self.memory_store
        )
        if isinstance(self.container.ports.store, MemoryChallengeStore):
            self.memory_store = self.container.ports.store
        # The options the composition root derives: the message and concurrency limits too.
        options = server_options(self.settings, self.container.app.caller_keys)
        self.running = await start_server(self.container.app, options)
        self.portal = self.stub(PORTAL_KEY)
        self.mobile = self.stub(MOBILE_KEY)
        self.advisor = self.stub(ADVISOR_KEY)

    async def stop(self) -> None:
        for channel in self.channels:
            await channel.close()
        self.channels.clear()
        if self.running:
            await self.running.stop()
        if self.container:
            await self.container.aclose()
        self.running = self.container = None

    async def restart(self, **changes: Any) -> None:
        """Stop, then start again on the same database and store, with ``changes`` to the
        settings (secret values given in clear)."""
        await self.stop()
        if changes:
            self.settings = Settings(**{**self.settings.model_dump(), **changes})
        await self.start()

    def stub(self, key: str | None) -> auth_pb2_grpc.AuthServiceAsyncStub:
        """A stub whose calls carry ``authorization: Bearer <key>`` (none if ``key`` is None)."""
        interceptors = [_BearerKey(key)] if key else []
        channel = grpc.aio.insecure_channel(self.address, interceptors=interceptors)
        self.channels.append(channel)
        return auth_pb2_grpc.AuthServiceStub(channel)

    def channel(self) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(self.address)
        self.channels.append(channel)
        return channel

    async def add_account(
        self,
        nir: str,
        *,
        password: str = PASSWORD,
        email: str | None = EMAIL,
        email_validated: bool = True,
        mobile_phone: str | None = None,
        affiliation: Affiliation = Affiliation.AFFILIATED,
    ) -> None:
        assert self.container is not None
        row = AccountRow(nir, password, email, email_validated, mobile_phone, affiliation)
        database = self.container.database
        await load_accounts(
            [row],
            SqlAccountRepository(database),
            SqlIdentityRegistry(database),
            self.container.ports.hasher,
            update=True,  # a test may load the same NIR again with other values
        )

    async def audit_request_ids(self) -> list[tuple[str, str | None]]:
        """(kind, request id) of every audit row, oldest first."""
        assert self.container is not None
        statement = select(audit_events.c.kind, audit_events.c.request_id).order_by(
            audit_events.c.id
        )
        return [
            (row.kind, row.request_id) for row in await rows(self.container.database, statement)
        ]

    async def login(
        self, nir: str, password: str = PASSWORD, **fields: Any
    ) -> auth_pb2.CheckCredentialsResponse:
        """CheckCredentials as a gateway of that channel would: the mobile back end's key for
        ``CHANNEL_MOBILE_APP`` (only it may claim that channel), the portal's otherwise."""
        mobile = fields.get("channel") == auth_pb2.CHANNEL_MOBILE_APP
        return await (self.mobile if mobile else self.portal).CheckCredentials(
            auth_pb2.CheckCredentialsRequest(nir=nir, password=password, **fields)
        )

    async def login_on_personal_computer(self, nir: str) -> auth_pb2.VerifyCodeResponse:
        """The whole login with the box "ordinateur personnel" ticked: the VerifyCode answer."""
        login_id = (await self.login(nir)).code_required.login_id
        code = await self.request_code(login_id)
        return await self.portal.VerifyCode(
            auth_pb2.VerifyCodeRequest(login_id=login_id, code=code, trust_device=True)
        )

    async def request_code(self, login_id: str) -> str:
        """RequestCode, then the code read from the email that arrived."""
        before = len(self.smtp.deliveries)
        await self.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
        messages = await self.smtp.wait_for_messages(before + 1)
        return extract_code(messages[-1])


_Request = TypeVar("_Request")
_Response = TypeVar("_Response")


class _BearerKey(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, key: str) -> None:
        self._metadata = (("authorization", f"Bearer {key}"),)

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Request],
            Awaitable[grpc.aio.UnaryUnaryCall[_Request, _Response]],
        ],
        details: grpc.aio.ClientCallDetails,
        request: _Request,
    ) -> grpc.aio.UnaryUnaryCall[_Request, _Response]:
        # A namedtuple at run time; the stub declares its fields but not _replace.
        details = details._replace(  # type: ignore[attr-defined]
            metadata=(*(details.metadata or ()), *self._metadata)
        )
        return await continuation(details, request)


@asynccontextmanager
async def running_service(
    smtp: SmtpTestServer, directory: Path, **overrides: Any
) -> AsyncIterator[ServiceUnderTest]:
    """A started service mailing to ``smtp``, its outbox in ``directory``; stopped on exit."""
    settings = settings_for_tests(
        smtp_host=smtp.host, smtp_port=smtp.port, outbox_dir=directory / "outbox", **overrides
    )
    service = ServiceUnderTest(settings, smtp)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def settings_for_tests(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "secret_key": secrets.token_hex(32),
        "portal_api_keys": f"test-portal:{PORTAL_KEY}",
        "mobile_api_keys": f"test-mobile:{MOBILE_KEY}",
        "advisor_api_keys": ADVISOR_KEY,
        "hash_workers": 2,
        "health_interval": 0.5,
        "shutdown_grace": 1.0,
        # Caller keys make this a production-like set-up; the SMS of most tests go to the outbox.
        "allow_outbox": True,
    }
    values.update(overrides)
    return Settings(**values)


def nir(serial: int, *, with_key: bool = True) -> str:
    """A valid NIR (man born January 1980 in Paris), different for each ``serial``."""
    from stdnum.fr import nir as stdnum_nir

    body = f"18001751{serial:05d}"
    return body + stdnum_nir.calc_check_digits(body) if with_key else body
