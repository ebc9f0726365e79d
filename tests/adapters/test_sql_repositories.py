"""Contract of the SQL adapters, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, StatementError

from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.migrate import upgrade
from ameli_grpc.adapters.sql.repositories import (
    SqlAccountRepository,
    SqlAuditLog,
    SqlIdentityRegistry,
    SqlProvisionalCodeRepository,
    SqlTrustedDeviceRepository,
)
from ameli_grpc.adapters.sql.schema import account_setups, audit_events, metadata
from ameli_grpc.domain.errors import DependencyUnavailable
from ameli_grpc.domain.model import (
    Account,
    AccountSetup,
    Affiliation,
    AuditEvent,
    ProvisionalCode,
    TrustedDevice,
)
from tests.support.databases import execute, rows

NIR = "1850775123456"
OTHER_NIR = "2900475123789"
NOW = datetime(2024, 3, 10, 14, 30, 15, 123456, tzinfo=UTC)


def make_account(nir: str = NIR, **changes: Any) -> Account:
    """A new account (new id) of that NIR, with ``changes`` applied."""
    account = Account(
        account_id=uuid.uuid4().hex,
        nir=nir,
        password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
        email="toto@test.com",
        email_validated=True,
        mobile_phone="+33612345678",
    )
    return replace(account, **changes)


async def stored_code(database: Database, nir: str) -> ProvisionalCode | None:
    """The NIR's provisional code, as the login reads it."""
    return (await SqlAccountRepository(database).get_with_provisional_code(nir))[1]


def make_device(account_id: str, token_hash: str = "d" * 64, **changes: Any) -> TrustedDevice:
    """A device of that account trusted at ``NOW`` for six months, with ``changes`` applied."""
    device = TrustedDevice(token_hash, account_id, NOW, NOW + timedelta(days=183))
    return replace(device, **changes)


async def test_added_account_is_found_by_id_and_by_nir(accounts: SqlAccountRepository) -> None:
    """An added account comes back equal, by its id and by its NIR."""
    account = make_account(email=None, email_validated=False, mobile_phone=None)
    await accounts.add(account)

    assert await accounts.get(account.account_id) == account
    assert await accounts.get_by_nir(NIR) == account
    assert await accounts.get_by_nir(OTHER_NIR) is None
    assert await accounts.get("0" * 32) is None


async def test_adding_an_account_of_a_known_nir_replaces_it_and_keeps_its_id(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """Importing a NIR again replaces its account's fields but keeps its id and its devices."""
    first = make_account()
    await accounts.add(first)
    device = make_device(first.account_id)
    await devices.add(device)
    second = make_account(password_hash="new-hash", email="titi@test.com", email_validated=False)
    await accounts.add(second)

    stored = await accounts.get_by_nir(NIR)
    assert stored == Account(
        account_id=first.account_id,
        nir=NIR,
        password_hash="new-hash",
        email="titi@test.com",
        email_validated=False,
        mobile_phone=second.mobile_phone,
    )
    assert await accounts.get(second.account_id) is None
    assert await devices.find(device.token_hash) == device  # updated in place, not deleted


async def test_update_password_hash_changes_only_that_account(
    accounts: SqlAccountRepository,
) -> None:
    """A rehash changes the password hash of that account and of no other."""
    account, other = make_account(), make_account(OTHER_NIR)
    await accounts.add(account)
    await accounts.add(other)

    await accounts.update_password_hash(account.account_id, "rehashed")

    stored = await accounts.get(account.account_id)
    assert stored is not None
    assert stored.password_hash == "rehashed"
    assert await accounts.get(other.account_id) == other


RESET_EVENT = AuditEvent(
    kind="account_reset",
    nir_ref="ref-123",
    occurred_time=NOW,
    advisor_id="conseiller-3646",
    detail="provisional_code_stored=True",
    caller="back-office",
    reason="messagerie perdue",
)


async def _audit_rows(database: Database) -> list[AuditEvent]:
    audit = await rows(database, select(audit_events).order_by(audit_events.c.id))
    return [AuditEvent(**{k: v for k, v in row._asdict().items() if k != "id"}) for row in audit]


async def _reset_scene(
    accounts: SqlAccountRepository,
    devices: SqlTrustedDeviceRepository,
    provisional_codes: SqlProvisionalCodeRepository,
) -> tuple[Account, Account, ProvisionalCode]:
    """An account with two devices and an earlier provisional code; another account with one."""
    account, other = make_account(), make_account(OTHER_NIR)
    await accounts.add(account)
    await accounts.add(other)
    await devices.add(make_device(account.account_id, "a" * 64))
    await devices.add(make_device(account.account_id, "b" * 64))
    await devices.add(make_device(other.account_id, "c" * 64))
    earlier = ProvisionalCode(NIR, "earlier-hash", NOW + timedelta(minutes=5))
    await provisional_codes.put(earlier)
    return account, other, earlier


async def test_reset_deletes_the_account_and_devices_stores_the_code_and_writes_the_row(
    database: Database,
    accounts: SqlAccountRepository,
    devices: SqlTrustedDeviceRepository,
    provisional_codes: SqlProvisionalCodeRepository,
) -> None:
    """One reset: the account and its devices gone, the new code in place, its audit row
    written; other accounts untouched; a second reset of the same account writes nothing."""
    account, other, _ = await _reset_scene(accounts, devices, provisional_codes)
    code = ProvisionalCode(NIR, "new-hash", NOW + timedelta(hours=1))
    event = replace(RESET_EVENT, account_id=account.account_id)

    assert await accounts.reset(account.account_id, code, event) is True

    assert await accounts.get(account.account_id) is None
    assert await devices.find("a" * 64) is None
    assert await devices.find("b" * 64) is None
    assert await devices.find("c" * 64) is not None
    assert await accounts.get(other.account_id) == other
    assert await stored_code(database, NIR) == code
    assert await _audit_rows(database) == [event]
    again = ProvisionalCode(NIR, "other-hash", NOW + timedelta(hours=2))
    assert await accounts.reset(account.account_id, again, event) is False
    assert await stored_code(database, NIR) == code
    assert await _audit_rows(database) == [event]


async def test_reset_without_a_code_leaves_the_code_table_alone(
    database: Database,
    accounts: SqlAccountRepository,
    devices: SqlTrustedDeviceRepository,
    provisional_codes: SqlProvisionalCodeRepository,
) -> None:
    """Without a provisional code the reset deletes and audits, and stores no code."""
    account, _, earlier = await _reset_scene(accounts, devices, provisional_codes)

    assert await accounts.reset(account.account_id, None, RESET_EVENT) is True

    assert await accounts.get(account.account_id) is None
    assert await stored_code(database, NIR) == earlier
    assert await _audit_rows(database) == [RESET_EVENT]


@pytest.mark.parametrize("failing", ["audit row", "provisional code"])
async def test_a_reset_that_fails_half_way_changes_nothing(
    database: Database,
    accounts: SqlAccountRepository,
    devices: SqlTrustedDeviceRepository,
    provisional_codes: SqlProvisionalCodeRepository,
    failing: str,
) -> None:
    """A constraint violation in the audit insert (or the code's) rolls the whole reset back:
    the account, its devices and the earlier code stay, no row is written."""
    account, _, earlier = await _reset_scene(accounts, devices, provisional_codes)
    code = ProvisionalCode(NIR, "new-hash", NOW + timedelta(hours=1))
    event = RESET_EVENT
    # A None in a NOT NULL column: a violation only the database detects, inside the transaction.
    if failing == "audit row":
        event = replace(RESET_EVENT, nir_ref=None)  # type: ignore[arg-type]
    else:
        code = replace(code, code_hash=None)  # type: ignore[arg-type]

    with pytest.raises(IntegrityError):
        await accounts.reset(account.account_id, code, event)

    assert await accounts.get(account.account_id) == account
    assert await devices.find("a" * 64) is not None
    assert await devices.find("b" * 64) is not None
    assert await stored_code(database, NIR) == earlier
    assert await _audit_rows(database) == []


async def test_concurrent_resets_of_one_account_happen_once(
    database: Database,
    accounts: SqlAccountRepository,
    devices: SqlTrustedDeviceRepository,
    provisional_codes: SqlProvisionalCodeRepository,
) -> None:
    """Of ten concurrent resets of one account exactly one resets it and writes its row."""
    account, _, _ = await _reset_scene(accounts, devices, provisional_codes)
    events = [replace(RESET_EVENT, advisor_id=f"advisor-{index}") for index in range(10)]

    results = await asyncio.gather(
        *(accounts.reset(account.account_id, None, event) for event in events)
    )

    assert results.count(True) == 1
    assert await _audit_rows(database) == [events[results.index(True)]]


async def test_trusted_device_is_found_by_token_hash_with_aware_utc_times(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """A device comes back equal, its times aware UTC even when given in another zone."""
    account = make_account()
    await accounts.add(account)
    paris = timezone(timedelta(hours=1))
    device = make_device(
        account.account_id, expire_time=datetime(2024, 9, 10, 15, 30, tzinfo=paris)
    )
    await devices.add(device)

    found = await devices.find(device.token_hash)

    assert found == device
    assert found is not None
    assert found.expire_time.utcoffset() == timedelta(0)
    assert found.expire_time == datetime(2024, 9, 10, 14, 30, tzinfo=UTC)
    assert await devices.find("e" * 64) is None


async def test_expired_trusted_device_is_returned_as_it_is(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """An expired device is still returned: the domain, not the adapter, judges expiry."""
    account = make_account()
    await accounts.add(account)
    expired = make_device(
        account.account_id,
        created_time=NOW - timedelta(days=400),
        expire_time=NOW - timedelta(days=1),
    )
    await devices.add(expired)

    assert await devices.find(expired.token_hash) == expired


async def test_device_of_an_account_gone_is_refused_without_error(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """A device of an account reset meanwhile (or unknown) is not stored: add says False."""
    account = make_account()
    await accounts.add(account)
    assert await devices.add(make_device(account.account_id, "a" * 64)) is True
    await accounts.reset(account.account_id, None, RESET_EVENT)

    assert await devices.add(make_device(account.account_id, "b" * 64)) is False
    assert await devices.add(make_device("f" * 32, "c" * 64)) is False
    assert await devices.find("b" * 64) is None
    assert await devices.find("c" * 64) is None


async def test_a_device_token_hash_used_twice_is_an_integrity_error(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """Only the account's foreign key reads as "gone": any other violation stays an error."""
    account = make_account()
    await accounts.add(account)
    await devices.add(make_device(account.account_id, "a" * 64))

    with pytest.raises(IntegrityError):
        await devices.add(make_device(account.account_id, "a" * 64))


async def test_naive_datetime_is_refused(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """A naive datetime is a bug and is refused rather than stored in an unknown zone."""
    account = make_account()
    await accounts.add(account)

    with pytest.raises(StatementError, match="naive datetime"):
        await devices.add(make_device(account.account_id, expire_time=datetime(2024, 9, 10)))


async def test_touch_records_the_last_use_and_never_moves_it_back(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """``touch`` sets that device's last use; an earlier use arriving late changes nothing."""
    account = make_account()
    await accounts.add(account)
    device, other = make_device(account.account_id, "a" * 64), make_device(account.account_id)
    await devices.add(device)
    await devices.add(other)
    assert await devices.find(device.token_hash) == device  # never used: None

    await devices.touch(device.token_hash, NOW + timedelta(days=2))
    await devices.touch(device.token_hash, NOW + timedelta(days=1))
    await devices.touch("e" * 64, NOW)  # no such device: nothing to do

    used = replace(device, last_use_time=NOW + timedelta(days=2))
    assert await devices.find(device.token_hash) == used
    assert await devices.find(other.token_hash) == other


async def test_rehash_stores_the_device_under_its_new_hash_and_keeps_the_rest(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """After ``rehash`` the device is found by its new hash only, with its account, times
    and last use unchanged; a second rehash of the old hash finds nothing to move."""
    account = make_account()
    await accounts.add(account)
    device = make_device(account.account_id, "a" * 64, last_use_time=NOW + timedelta(days=1))
    await devices.add(device)
    await devices.add(make_device(account.account_id, "b" * 64))

    await devices.rehash(device.token_hash, "f" * 64)
    await devices.rehash(device.token_hash, "e" * 64)

    assert await devices.find(device.token_hash) is None
    assert await devices.find("e" * 64) is None
    assert await devices.find("f" * 64) == replace(device, token_hash="f" * 64)
    assert await devices.find("b" * 64) is not None


async def test_the_devices_listed_are_the_accounts_still_trusted_oldest_first(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository
) -> None:
    """Only the account's devices ending after ``now``, in the order they were trusted."""
    account, other = make_account(), make_account(OTHER_NIR)
    await accounts.add(account)
    await accounts.add(other)
    newer = make_device(account.account_id, "a" * 64, created_time=NOW + timedelta(hours=1))
    older = make_device(account.account_id, "b" * 64, last_use_time=NOW + timedelta(hours=2))
    ending_now = make_device(account.account_id, "c" * 64, expire_time=NOW + timedelta(days=1))
    for device in (newer, older, ending_now, make_device(other.account_id, "d" * 64)):
        await devices.add(device)

    listed = await devices.list_for_account(account.account_id, NOW + timedelta(days=1))

    assert listed == (older, newer)
    assert await devices.list_for_account("0" * 32, NOW) == ()


async def test_deleting_an_accounts_devices_counts_those_still_trusted(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository, database: Database
) -> None:
    """Every device of the account goes, expired ones too; the count is of the trusted ones,
    and the audit row built from it is written with them."""
    account, other = make_account(), make_account(OTHER_NIR)
    await accounts.add(account)
    await accounts.add(other)
    await devices.add(make_device(account.account_id, "a" * 64))
    await devices.add(make_device(account.account_id, "b" * 64))
    await devices.add(make_device(account.account_id, "c" * 64, expire_time=NOW))
    await devices.add(make_device(other.account_id, "d" * 64))

    assert await devices.delete_for_account(account.account_id, NOW, _revoked_row) == 2

    for token_hash in ("a" * 64, "b" * 64, "c" * 64):
        assert await devices.find(token_hash) is None
    assert await devices.find("d" * 64) is not None
    assert await accounts.get(account.account_id) == account
    assert await devices.delete_for_account(account.account_id, NOW, _revoked_row) == 0
    details = [row.detail for row in await rows(database, select(audit_events.c.detail))]
    assert details == ["revoked_count=2", "revoked_count=0"]


async def test_a_revocation_whose_audit_row_fails_deletes_nothing(
    accounts: SqlAccountRepository, devices: SqlTrustedDeviceRepository, database: Database
) -> None:
    """The devices and their audit row are one transaction: a row the database refuses (one
    without its NOT NULL nir_ref) leaves every device trusted."""
    account = make_account()
    await accounts.add(account)
    await devices.add(make_device(account.account_id, "a" * 64))

    def refused_row(revoked: int) -> AuditEvent:
        return replace(_revoked_row(revoked), nir_ref=None)  # type: ignore[arg-type]  # NOT NULL

    with pytest.raises(IntegrityError):
        await devices.delete_for_account(account.account_id, NOW, refused_row)

    assert await devices.find("a" * 64) is not None
    assert await rows(database, select(audit_events)) == []


def _revoked_row(revoked: int) -> AuditEvent:
    return AuditEvent("devices_revoked", "ref-1", NOW, detail=f"revoked_count={revoked}")


async def test_provisional_code_put_replaces_the_earlier_one(
    database: Database, provisional_codes: SqlProvisionalCodeRepository
) -> None:
    """A new provisional code of a NIR replaces the earlier one."""
    await provisional_codes.put(ProvisionalCode(NIR, "first-hash", NOW + timedelta(hours=1)))
    latest = ProvisionalCode(NIR, "second-hash", NOW + timedelta(hours=2))
    await provisional_codes.put(latest)

    assert await stored_code(database, NIR) == latest
    assert await stored_code(database, OTHER_NIR) is None
    assert await provisional_codes.consume(NIR, "first-hash") is False
    assert await stored_code(database, NIR) == latest


async def test_one_read_gives_the_account_and_the_provisional_code_of_a_nir(
    accounts: SqlAccountRepository, provisional_codes: SqlProvisionalCodeRepository
) -> None:
    """The login's read finds either, both or neither, each NIR on its own."""
    account = make_account()
    code = ProvisionalCode(OTHER_NIR, "code-hash", NOW + timedelta(hours=1))
    assert await accounts.get_with_provisional_code(NIR) == (None, None)

    await accounts.add(account)
    await provisional_codes.put(code)
    assert await accounts.get_with_provisional_code(NIR) == (account, None)
    assert await accounts.get_with_provisional_code(OTHER_NIR) == (None, code)

    both = replace(code, nir=NIR)
    await provisional_codes.put(both)
    assert await accounts.get_with_provisional_code(NIR) == (account, both)


async def test_provisional_code_is_consumed_once_under_concurrency(
    database: Database, provisional_codes: SqlProvisionalCodeRepository
) -> None:
    """Of twenty concurrent consumers of one provisional code, exactly one succeeds."""
    await provisional_codes.put(ProvisionalCode(NIR, "code-hash", NOW + timedelta(hours=1)))

    results = await asyncio.gather(
        *(provisional_codes.consume(NIR, "code-hash") for _ in range(20))
    )

    assert results.count(True) == 1
    assert await stored_code(database, NIR) is None


class _FixedClock:
    def now(self) -> datetime:
        return NOW


CODE = ProvisionalCode(NIR, "code-hash", NOW + timedelta(hours=1))


def make_setup(token_hash: str = "5" * 64, nir: str = NIR) -> AccountSetup:
    """The setup token a redeemed provisional code of ``nir`` leads to, valid 15 minutes."""
    return AccountSetup(token_hash, nir, NOW + timedelta(minutes=15))


@pytest.fixture
def redeemer(database: Database) -> SqlProvisionalCodeRepository:
    """The provisional codes on a clock stopped at ``NOW``, so a setup's created_time is known."""
    return SqlProvisionalCodeRepository(database, _FixedClock())


async def _setup_rows(database: Database) -> list[dict[str, Any]]:
    """Every ``account_setups`` row, by token hash."""
    statement = select(account_setups).order_by(account_setups.c.token_hash)
    return [row._asdict() for row in await rows(database, statement)]


def _setup_row(setup: AccountSetup) -> dict[str, Any]:
    return {
        "token_hash": setup.token_hash,
        "nir": setup.nir,
        "created_time": NOW,
        "expire_time": setup.expire_time,
    }


async def test_redeem_consumes_the_code_and_records_the_setup_token(
    database: Database, redeemer: SqlProvisionalCodeRepository
) -> None:
    """Redeeming the current code deletes it and records the setup's token hash, NIR and expiry."""
    await redeemer.put(CODE)
    await redeemer.put(ProvisionalCode(OTHER_NIR, "other-hash", NOW + timedelta(hours=1)))
    setup = make_setup()

    assert await redeemer.redeem(NIR, CODE.code_hash, setup) is True

    assert await stored_code(database, NIR) is None
    assert await stored_code(database, OTHER_NIR) is not None
    assert await _setup_rows(database) == [_setup_row(setup)]


async def test_a_second_redeem_of_the_same_code_is_false_and_records_nothing(
    database: Database, redeemer: SqlProvisionalCodeRepository
) -> None:
    """A provisional code redeems once: the second redeem is False and adds no setup."""
    await redeemer.put(CODE)
    first = make_setup("1" * 64)
    assert await redeemer.redeem(NIR, CODE.code_hash, first) is True

    assert await redeemer.redeem(NIR, CODE.code_hash, make_setup("2" * 64)) is False

    assert await _setup_rows(database) == [_setup_row(first)]


@pytest.mark.parametrize(
    ("nir", "code_hash"),
    [(NIR, "first-hash"), (OTHER_NIR, "code-hash")],
    ids=["replaced by a newer code", "another NIR"],
)
async def test_a_redeem_of_a_code_that_is_not_the_current_one_is_false(
    database: Database, redeemer: SqlProvisionalCodeRepository, nir: str, code_hash: str
) -> None:
    """A code hash that is not this NIR's current code redeems nothing and consumes nothing."""
    await redeemer.put(ProvisionalCode(NIR, "first-hash", NOW + timedelta(minutes=30)))
    await redeemer.put(CODE)

    assert await redeemer.redeem(nir, code_hash, make_setup(nir=nir)) is False

    assert await stored_code(database, NIR) == CODE
    assert await stored_code(database, OTHER_NIR) is None
    assert await _setup_rows(database) == []


async def test_provisional_code_is_redeemed_once_under_concurrency(
    database: Database, redeemer: SqlProvisionalCodeRepository
) -> None:
    """Of twenty concurrent redeems of one code, exactly one succeeds and records its setup."""
    await redeemer.put(CODE)
    setups = [make_setup(f"{index:064x}") for index in range(20)]

    results = await asyncio.gather(
        *(redeemer.redeem(NIR, CODE.code_hash, setup) for setup in setups)
    )

    assert results.count(True) == 1
    winner = setups[results.index(True)]
    assert await _setup_rows(database) == [_setup_row(winner)]
    assert await stored_code(database, NIR) is None


async def test_a_setup_that_cannot_be_recorded_leaves_the_code_unconsumed(
    database: Database, redeemer: SqlProvisionalCodeRepository
) -> None:
    """If the setup row is refused (a token hash already used), the code's deletion is undone."""
    await redeemer.put(ProvisionalCode(NIR, "first-hash", NOW + timedelta(minutes=30)))
    taken = make_setup("7" * 64)
    assert await redeemer.redeem(NIR, "first-hash", taken) is True
    await redeemer.put(CODE)

    with pytest.raises(IntegrityError):
        await redeemer.redeem(NIR, CODE.code_hash, make_setup(taken.token_hash))

    assert await stored_code(database, NIR) == CODE
    assert await _setup_rows(database) == [_setup_row(taken)]
    fresh = make_setup("8" * 64)
    assert await redeemer.redeem(NIR, CODE.code_hash, fresh) is True
    assert await _setup_rows(database) == [_setup_row(taken), _setup_row(fresh)]


async def test_audit_event_is_recorded(database: Database, audit: SqlAuditLog) -> None:
    """Each audit event becomes one row with all its fields."""
    event = AuditEvent(
        kind="advisor_reset",
        nir_ref="ref-123",
        occurred_time=NOW,
        account_id="a" * 32,
        advisor_id="advisor-42",
        detail="appel 3646",
        client_ip="192.0.2.10",
        caller="back-office",
        reason="perte du téléphone",
        user_agent="Mozilla/5.0",
        request_id="req-1",
    )
    await audit.record(event)
    await audit.record(AuditEvent(kind="login_failed", nir_ref="ref-123", occurred_time=NOW))

    written = await rows(database, select(audit_events).order_by(audit_events.c.id))
    assert len(written) == 2
    first = written[0]._asdict()
    del first["id"]
    assert AuditEvent(**first) == event
    assert written[1].advisor_id is None


@pytest.mark.parametrize("affiliation", list(Affiliation))
async def test_identity_registry_returns_the_recorded_affiliation(
    registry: SqlIdentityRegistry, affiliation: Affiliation
) -> None:
    """The registry answers what was last recorded for the NIR."""
    await registry.set_affiliation(NIR, Affiliation.AFFILIATED)
    await registry.set_affiliation(NIR, affiliation)

    assert await registry.affiliation(NIR) is affiliation


async def test_identity_registry_says_not_covered_for_an_absent_nir(
    registry: SqlIdentityRegistry,
) -> None:
    """A NIR missing from the RFI table has no caisse: it is not covered (case 7)."""
    await registry.set_affiliation(OTHER_NIR, Affiliation.AFFILIATED)

    assert await registry.affiliation(NIR) is Affiliation.NOT_COVERED


async def test_upgrade_twice_changes_nothing(
    database_url: str, accounts: SqlAccountRepository
) -> None:
    """Migrating an up-to-date database again is a no-op that keeps the data."""
    account = make_account()
    await accounts.add(account)

    await upgrade(database_url)

    assert await accounts.get(account.account_id) == account


async def test_migrated_schema_is_the_declared_one(database: Database) -> None:
    """The hand-written migrations create exactly the tables the adapters declare."""

    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    assert await database.transaction(differences) == []


async def test_ping_succeeds_on_a_reachable_database(database: Database) -> None:
    """A reachable database answers the health ping."""
    await database.ping()


@pytest.mark.parametrize(
    "unreachable_url",
    ["sqlite", "postgres-closed-port", "postgres-silent-server"],
    indirect=True,
)
async def test_unreachable_database_is_dependency_unavailable(unreachable_url: str) -> None:
    """An unreachable or silent database raises DependencyUnavailable within its timeout."""
    database = Database(unreachable_url, timeout=0.5)
    accounts = SqlAccountRepository(database)
    started = time.monotonic()
    try:
        with pytest.raises(DependencyUnavailable):
            await database.ping()
        with pytest.raises(DependencyUnavailable):
            await accounts.get_by_nir(NIR)
    finally:
        await database.dispose()
    assert time.monotonic() - started < 3


async def test_sqlite_locked_past_the_busy_timeout_is_dependency_unavailable(
    sqlite_url: str,
) -> None:
    """A write kept waiting by another SQLite writer past the timeout is DependencyUnavailable."""
    path = make_url(sqlite_url).database
    assert path is not None
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    database = Database(sqlite_url, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(DependencyUnavailable):
            await SqlIdentityRegistry(database).set_affiliation(NIR, Affiliation.AFFILIATED)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        await database.dispose()
    assert 0.2 < time.monotonic() - started < 3


@pytest.mark.postgres
async def test_slow_statement_is_cancelled_as_dependency_unavailable(postgres_url: str) -> None:
    """A statement slower than the timeout is cancelled and reported as DependencyUnavailable."""
    database = Database(postgres_url, timeout=0.3)
    started = time.monotonic()
    try:
        with pytest.raises(DependencyUnavailable):
            await execute(database, "SELECT pg_sleep(5)")
        await database.ping()  # the connection survived the cancelled statement
    finally:
        await database.dispose()
    assert time.monotonic() - started < 3
