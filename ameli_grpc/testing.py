"""A pytest plugin for other teams' integration tests: a real AuthService of their own.

Installed with the server package (entry point ``pytest11``), it gives the
fixture ``ameli_service``: the real embedded server (SQLite and the outbox in a
temporary directory, the in-process store) on a free loopback port, started
for one test and stopped after it::

    async def test_login(ameli_service):
        ameli_service.add_account("180017511200169", "Mot-de-passe-1", email="a@example.fr")
        checked = await ameli_service.client.check_credentials(
            nir="180017511200169", password="Mot-de-passe-1"
        )
        login_id = checked.code_required.login_id
        await ameli_service.client.request_code(login_id=login_id)
        code = ameli_service.last_code("a@example.fr")
        ...
        ameli_service.advance(minutes=15)  # locks and codes expire without sleeping

The server runs in a thread of its own with its own event loop, so the
helpers are plain functions and the fixture serves synchronous and
asynchronous tests alike: ``client``, ``mobile_client`` and ``advisor_client``
are ``AuthClient``s for async tests, ``sync_client``, ``sync_mobile_client`` and
``sync_advisor_client`` blocking ``SyncAuthClient``s for the others::

    def test_login(ameli_service):
        ameli_service.add_account("180017511200169", "Mot-de-passe-1", email="a@example.fr")
        checked = ameli_service.sync_client.check_credentials(
            nir="180017511200169", password="Mot-de-passe-1"
        )

``AmeliTestServer`` is the same server without pytest
(``with AmeliTestServer(directory) as server: ...``).

Importing this module is cheap: nothing starts unless the fixture is used.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import Coroutine, Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from ameli_grpc.domain.clock import AdjustableClock
from ameli_grpc.domain.model import Affiliation

if TYPE_CHECKING:
    import grpc
    from ameli.auth.client import AuthClient, SyncAuthClient

    from ameli_grpc.bootstrap import Container
    from ameli_grpc.server.app import RunningServer

__all__ = [
    "ADVISOR_KEY",
    "MOBILE_KEY",
    "PORTAL_KEY",
    "Affiliation",
    "AmeliTestServer",
    "ameli_service",
]

PORTAL_KEY = "ameli-testing-portal-key"
MOBILE_KEY = "ameli-testing-mobile-key"
ADVISOR_KEY = "ameli-testing-advisor-key"

_START_TIMEOUT = 60.0
_SPACED_CODE = re.compile(r"\d(?: \d){5}")  # the code line of the email: "1 2 3 4 5 6"
_PROVISIONAL_CODE = re.compile(r"\b[A-Z2-9]{10}\b")
_T = TypeVar("_T")


class AmeliTestServer:
    """The real embedded AuthService on ``127.0.0.1:<free port>``, for one test.

    ``directory`` holds its SQLite database and its outbox (emails and SMS as
    files). ``settings`` override the service's settings (``max_password_failures=5``…);
    the keys are ``portal_key``, ``mobile_key`` and ``advisor_key``.
    """

    def __init__(self, directory: Path, **settings: Any) -> None:
        self.directory = Path(directory)
        self.outbox_dir = self.directory / "outbox"
        self.clock = AdjustableClock()
        self.portal_key = PORTAL_KEY
        self.mobile_key = MOBILE_KEY
        self.advisor_key = ADVISOR_KEY
        self._overrides = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._container: Container | None = None
        self._running: RunningServer | None = None
        self._clients: dict[tuple[int, str], AuthClient] = {}
        self._sync_clients: dict[str, SyncAuthClient] = {}
        self._channels: list[tuple[asyncio.AbstractEventLoop, grpc.aio.Channel]] = []

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> AmeliTestServer:
        """Start the server (migrating its new database); returns once it listens."""
        if self._loop is not None:
            raise RuntimeError("the server is started already")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ameli-test-server", daemon=True
        )
        self._thread.start()
        try:
            self._run(self._start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and close the clients it handed out."""
        self._close_clients()
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self._run(self._stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_START_TIMEOUT)
            loop.close()
            self._loop = self._thread = None

    def __enter__(self) -> AmeliTestServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def target(self) -> str:
        """``127.0.0.1:<port>``, for ``grpc.aio.insecure_channel`` or ``ameli.auth``."""
        if self._running is None:
            raise RuntimeError("the server is not started")
        return f"127.0.0.1:{self._running.port}"

    # -- helpers ----------------------------------------------------------------------------

    def add_account(
        self,
        nir: str,
        password: str,
        *,
        email: str | None = "assure@example.fr",
        email_validated: bool = True,
        mobile_phone: str | None = None,
        affiliation: Affiliation | str = Affiliation.AFFILIATED,
    ) -> None:
        """Create the account of ``nir`` (13 or 15 characters), or replace it.

        ``affiliation`` is what the RFI registry answers for it: ``"AFFILIATED"``,
        ``"NOT_COVERED"`` or ``"PENDING"`` (or the ``Affiliation`` member).
        """
        from ameli_grpc.accounts_import import AccountRow

        if isinstance(affiliation, str):
            affiliation = Affiliation[affiliation.upper()]
        row = AccountRow(nir, password, email, email_validated, mobile_phone, affiliation)
        self._run(self._load(row))

    def last_code(self, email: str) -> str:
        """The security code of the last email sent to ``email`` (``LookupError`` if none)."""
        wanted = email.strip().lower()
        for path in sorted(self.outbox_dir.glob("*.eml"), reverse=True):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            assert isinstance(message, EmailMessage)
            if parseaddr(str(message["To"]))[1].lower() != wanted:
                continue
            body = message.get_body(preferencelist=("plain",))
            assert isinstance(body, EmailMessage)
            for line in str(body.get_content()).splitlines():
                if _SPACED_CODE.fullmatch(line.strip()):
                    return line.strip().replace(" ", "")
        raise LookupError("no security code was emailed to this address")

    def last_sms(self, phone: str) -> str:
        """The provisional code of the last SMS sent to ``phone`` (``LookupError`` if none).

        Numbers are compared by their last nine digits: ``06 12 34 56 78`` is ``+33612345678``.
        """
        wanted = _phone_key(phone)
        for path in sorted(self.outbox_dir.glob("*.sms.txt"), reverse=True):
            head, _, text = path.read_text(encoding="utf-8").partition("\n\n")
            recipient = head.splitlines()[0].removeprefix("To:").strip()
            if _phone_key(recipient) != wanted:
                continue
            found = _PROVISIONAL_CODE.search(text)
            if found:
                return found.group()
        raise LookupError("no provisional code was texted to this number")

    def advance(self, delta: timedelta | None = None, /, **units: float) -> datetime:
        """Move the server's clock forward (``advance(minutes=15)``); returns its new time."""
        return self.clock.advance(delta, **units)

    @property
    def client(self) -> AuthClient:
        """An ``ameli.auth.AuthClient`` with the portal key, on the running event loop."""
        return self._client(self.portal_key)

    @property
    def mobile_client(self) -> AuthClient:
        """An ``AuthClient`` with the mobile back end's key (``CHANNEL_MOBILE_APP``)."""
        return self._client(self.mobile_key)

    @property
    def advisor_client(self) -> AuthClient:
        """An ``AuthClient`` with the advisor key (the advisor RPCs)."""
        return self._client(self.advisor_key)

    @property
    def sync_client(self) -> SyncAuthClient:
        """A blocking ``ameli.auth.SyncAuthClient`` with the portal key, for synchronous tests."""
        return self._sync_client(self.portal_key)

    @property
    def sync_mobile_client(self) -> SyncAuthClient:
        """A ``SyncAuthClient`` with the mobile back end's key (``CHANNEL_MOBILE_APP``)."""
        return self._sync_client(self.mobile_key)

    @property
    def sync_advisor_client(self) -> SyncAuthClient:
        """A ``SyncAuthClient`` with the advisor key (the advisor RPCs)."""
        return self._sync_client(self.advisor_key)

    # -- inside ------------------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the server is not started")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(_START_TIMEOUT)

    async def _start(self) -> None:
        from ameli_grpc.bootstrap import build_container, server_options
        from ameli_grpc.config import Settings
        from ameli_grpc.server.app import start_server

        values: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "database_url": f"sqlite+aiosqlite:///{self.directory / 'ameli.db'}",
            "redis_url": "",
            "smtp_host": "",
            "sms_url": "",
            "rfi_url": "",
            # add_account() may change a NIR's affiliation between two logins: answered at once.
            "rfi_cache_ttl": 0,
            # A burst is shed by its count only (AMELI_MAX_PENDING_HASHES), never because a
            # busy CI machine hashes slowly: the same test, the same answers.
            "max_hash_wait": 0,
            "metrics_listen": "",
            "outbox_dir": self.outbox_dir,
            "allow_outbox": True,
            "secret_key": secrets.token_hex(32),
            "previous_secret_keys": "",
            "portal_api_keys": f"portal:{self.portal_key}",
            "mobile_api_keys": f"mobile:{self.mobile_key}",
            "advisor_api_keys": self.advisor_key,
            "shutdown_grace": 0.5,
            "drain_delay": 0.0,
        }
        values.update(self._overrides)
        settings = Settings(**values)
        self._container = await build_container(settings, clock=self.clock, serve_metrics=False)
        options = server_options(settings, self._container.app.caller_keys)
        self._running = await start_server(self._container.app, options)

    async def _stop(self) -> None:
        if self._running is not None:
            await self._running.stop()
        if self._container is not None:
            await self._container.aclose()
        self._running = self._container = None

    async def _load(self, row: Any) -> None:
        from ameli_grpc.accounts_import import load_accounts
        from ameli_grpc.adapters.sql.repositories import SqlAccountRepository, SqlIdentityRegistry

        container = self._container
        if container is None:
            raise RuntimeError("the server is not started")
        await load_accounts(
            [row],
            SqlAccountRepository(container.database),
            SqlIdentityRegistry(container.database),
            container.ports.hasher,
            update=True,
        )

    def _client(self, key: str) -> AuthClient:
        import grpc
        from ameli.auth.client import AuthClient

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "AuthClient is asynchronous: use it in an async test (pytest-asyncio), "
                "or sync_client in a synchronous one"
            ) from None
        cached = self._clients.get((id(loop), key))
        if cached is None:
            channel = grpc.aio.insecure_channel(self.target)
            self._channels.append((loop, channel))
            cached = self._clients[(id(loop), key)] = AuthClient(channel, api_key=key)
        return cached

    def _sync_client(self, key: str) -> SyncAuthClient:
        from ameli.auth.client import connect_sync

        cached = self._sync_clients.get(key)
        if cached is None:
            cached = self._sync_clients[key] = connect_sync(self.target, api_key=key)
        return cached

    def _close_clients(self) -> None:
        for client in self._sync_clients.values():
            client.close()
        self._sync_clients.clear()
        for loop, channel in self._channels:
            # A loop that is gone took its channel's calls with it; the channel closes when
            # collected. A loop that still exists (and is idle) closes it properly.
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(channel.close())
        self._channels.clear()
        self._clients.clear()


def _phone_key(phone: str) -> str:
    return "".join(character for character in phone if character.isdigit())[-9:]


@pytest.fixture
def ameli_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AmeliTestServer]:
    """A started ``AmeliTestServer`` of its own for the test, stopped after it."""
    with AmeliTestServer(tmp_path_factory.mktemp("ameli_service")) as server:
        yield server
