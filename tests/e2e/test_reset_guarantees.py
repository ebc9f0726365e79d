"""ResetAccount's guarantees, end to end on both adapter sets (SPEC §8).

No login succeeds once ResetAccount has returned, however many are under way;
the account, its devices, the provisional code and the audit row change in one
transaction; the SMS leaves only after the commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
from ameli.auth.v1 import auth_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import select

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.repositories import SqlAccountRepository
from ameli_grpc.adapters.sql.schema import audit_events
from tests.e2e.conftest import ServiceFactory
from tests.e2e.harness import ServiceUnderTest, nir, refused
from tests.support.databases import execute, rows
from tests.support.http_gateway import gateway_server
from tests.support.waiting import wait_for

MOBILE = auth_pb2.CHANNEL_MOBILE_APP
# Nothing in the race may be refused for its count: only the reset may stop a login.
GENEROUS = {
    "max_password_failures": 1000,
    "max_code_failures": 1000,
    "daily_failure_limit": 1000,
    "max_consecutive_failures": 1000,
    "code_quota": 1000,
}
# What a login may answer once its account is reset: never INTERNAL or a bare status.
REFUSALS_AFTER_RESET = {
    "INVALID_CREDENTIALS",
    "LOGIN_NOT_FOUND",
    "SERVICE_UNAVAILABLE",  # a CheckCredentials shed by a busy hasher (SPEC §7.5)
}


def reset_request(nir_value: str, send_code: bool = False) -> auth_pb2.ResetAccountRequest:
    return auth_pb2.ResetAccountRequest(
        nir=nir_value,
        advisor_id="conseiller-3646",
        reason="messagerie perdue",
        send_provisional_code=send_code,
    )


@dataclass(frozen=True)
class Outcome:
    """One call of the race: when it left and when its answer came back (monotonic)."""

    what: str
    started: float
    received: float
    reason: str  # "" for a success, else the refusal's ErrorInfo reason (or its bare code)


async def timed(what: str, call: Callable[[], Awaitable[object]]) -> Outcome:
    started = time.monotonic()
    try:
        await call()
    except grpc.aio.AioRpcError as error:
        received = time.monotonic()
        status = rpc_status.from_call(error)  # type: ignore[arg-type]  # reads code, details
        info = error_details_pb2.ErrorInfo()
        for detail in status.details if status else ():
            if detail.Unpack(info):
                return Outcome(what, started, received, info.reason)
        return Outcome(what, started, received, str(error.code()))
    return Outcome(what, started, time.monotonic(), "")


async def pending_login(service: ServiceUnderTest, nir_value: str) -> tuple[str, str]:
    """A web login with its code requested: its id and the code from the email."""
    login_id = (await service.login(nir_value)).code_required.login_id
    return login_id, await service.request_code(login_id)


def verify(service: ServiceUnderTest, login: tuple[str, str], trust: bool) -> Awaitable[object]:
    request = auth_pb2.VerifyCodeRequest(login_id=login[0], code=login[1], trust_device=trust)
    return service.portal.VerifyCode(request)


async def test_no_login_succeeds_once_reset_account_has_returned(
    make_service: ServiceFactory,
) -> None:
    """Mobile and web CheckCredentials in loops and a burst of VerifyCodes around one
    ResetAccount: every success was received before the reset returned; afterwards every
    call is refused, and a VerifyCode of a login from before gets LOGIN_NOT_FOUND."""
    service = await make_service(**GENEROUS)
    person = nir(81)
    await service.add_account(person)
    racing = [await pending_login(service, person) for _ in range(24)]
    held = [await pending_login(service, person) for _ in range(3)]
    outcomes: list[Outcome] = []
    stop = asyncio.Event()

    async def keep_calling(what: str, call: Callable[[], Awaitable[object]]) -> None:
        while not stop.is_set():
            outcomes.append(await timed(what, call))

    async def verify_later(delay: float, login: tuple[str, str], trust: bool) -> None:
        await asyncio.sleep(delay)
        outcomes.append(await timed("verify", lambda: verify(service, login, trust)))

    loops = [
        *(keep_calling("mobile", lambda: service.login(person, channel=MOBILE)) for _ in range(6)),
        *(keep_calling("web", lambda: service.login(person)) for _ in range(3)),
    ]
    tasks = [asyncio.create_task(loop) for loop in loops]
    await wait_for(
        lambda: sum(o.what == "mobile" and not o.reason for o in outcomes) >= 3,
        what="the logins under way",
    )
    # A burst of VerifyCodes, one every 10 ms, from 120 ms before the reset is sent.
    burst = [verify_later(0.01 * i, login, i % 2 == 0) for i, login in enumerate(racing)]
    tasks += [asyncio.create_task(verifying) for verifying in burst]
    await asyncio.sleep(0.12)
    reset_sent = time.monotonic()
    await service.advisor.ResetAccount(reset_request(person))
    reset_returned = time.monotonic()
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)

    late = [o for o in outcomes if not o.reason and o.received >= reset_returned]
    assert late == [], f"succeeded after the reset returned at {reset_returned}: {late}"
    across = [o for o in outcomes if o.started < reset_sent and o.received > reset_returned]
    assert across, "no call was under way across the reset: the race did not happen"
    after = [o for o in outcomes if o.received > reset_returned]
    assert {o.reason for o in after} <= REFUSALS_AFTER_RESET, after
    for login in held:
        refusal = await refused(verify(service, login, True))
        assert refusal.reason == "LOGIN_NOT_FOUND"


async def test_a_reset_whose_audit_row_fails_changes_nothing(service: ServiceUnderTest) -> None:
    """The database refuses the account_reset row: the reset fails as a whole, the account, its
    trusted device and its locks stay, and no provisional code is stored or sent."""
    person = nir(82)
    await service.add_account(person, mobile_phone="06 12 34 56 78")
    token = (await service.login_on_personal_computer(person)).device_token
    for _ in range(3):
        await refused(service.login(person, password="faux"))
    assert service.container is not None
    database = service.container.database

    async with refusing_reset_rows(database):
        failed = await refused(service.advisor.ResetAccount(reset_request(person, True)))

    assert failed.code == grpc.StatusCode.INTERNAL
    assert await SqlAccountRepository(database).get_by_nir(person[:13]) is not None
    trusted = await service.login(person, device_token=token)
    assert trusted.WhichOneof("result") == "authenticated"
    status = await service.advisor.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=person))
    assert status.locked
    assert list(service.settings.outbox_dir.glob("*.sms.txt")) == []
    assert await reset_rows(database) == 0


async def test_the_sms_leaves_only_after_the_reset_is_committed(
    make_service: ServiceFactory,
) -> None:
    """While the SMS gateway holds the message, the account is already gone from the database
    and the account_reset row is there; a VerifyCode of an earlier login is refused."""
    async with gateway_server() as gateway:
        gateway.delay = 0.5
        service = await make_service(sms_url=gateway.url, sms_api_key="sms-key", sms_timeout=5)
        person = nir(83)
        await service.add_account(person, mobile_phone="06 12 34 56 78")
        login = await pending_login(service, person)
        assert service.container is not None
        database = service.container.database

        call = asyncio.ensure_future(service.advisor.ResetAccount(reset_request(person, True)))
        await wait_for(lambda: gateway.received, what="the SMS at the gateway")
        account_then = await SqlAccountRepository(database).get_by_nir(person[:13])
        rows_then = await reset_rows(database)
        refusal_then = await refused(verify(service, login, False))
        done = await call

    assert account_then is None
    assert rows_then == 1
    assert refusal_then.reason == "LOGIN_NOT_FOUND"
    assert done.provisional_code_sent


async def reset_rows(database: Database) -> int:
    return len(
        await rows(
            database, select(audit_events.c.id).where(audit_events.c.kind == "account_reset")
        )
    )


_SQLITE_REFUSAL = """
CREATE TRIGGER refuse_reset_rows BEFORE INSERT ON audit_events
WHEN NEW.kind = 'account_reset' BEGIN SELECT RAISE(ABORT, 'account_reset refused'); END
"""
_POSTGRES_REFUSAL = (
    """
CREATE FUNCTION refuse_reset_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.kind = 'account_reset' THEN RAISE EXCEPTION 'account_reset refused'; END IF;
  RETURN NEW;
END $$
""",
    """
CREATE TRIGGER refuse_reset_rows BEFORE INSERT ON audit_events
FOR EACH ROW EXECUTE FUNCTION refuse_reset_rows()
""",
)


@asynccontextmanager
async def refusing_reset_rows(database: Database) -> AsyncIterator[None]:
    """Within the block the database refuses every account_reset audit row (a trigger);
    dropped on the way out, since PostgreSQL's database is shared by the session's tests."""
    sqlite = database.dialect_name == "sqlite"
    await _execute(database, (_SQLITE_REFUSAL,) if sqlite else _POSTGRES_REFUSAL)
    try:
        yield
    finally:
        if sqlite:
            await _execute(database, ("DROP TRIGGER refuse_reset_rows",))
        else:
            await _execute(
                database,
                (
                    "DROP TRIGGER refuse_reset_rows ON audit_events",
                    "DROP FUNCTION refuse_reset_rows()",
                ),
            )


async def _execute(database: Database, statements: tuple[str, ...]) -> None:
    await execute(database, *statements)
