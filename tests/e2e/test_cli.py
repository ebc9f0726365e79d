"""The ``ameli-grpc`` command line: migrate, accounts import, demo-data, and unsafe settings."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from ameli_grpc.accounts_import import AccountRow, ImportRowError
from ameli_grpc.adapters.sql.database import Database
from ameli_grpc.adapters.sql.repositories import (
    SqlAccountRepository,
    SqlIdentityRegistry,
    SqlProvisionalCodeRepository,
    SqlTrustedDeviceRepository,
)
from ameli_grpc.bootstrap import import_accounts
from ameli_grpc.cli import main
from ameli_grpc.config import Settings
from ameli_grpc.demo import DEMO_CASES
from ameli_grpc.domain.model import Account, Affiliation, ProvisionalCode, TrustedDevice
from tests.e2e.harness import nir

HEADER = "nir,password,email,email_validated,mobile_phone,affiliation\n"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``main`` configures logging onto this test's captured stderr: undo it afterwards."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A development set-up (loopback, no caller keys) on an SQLite file of this test."""
    for name in list(os.environ):
        if name.upper().startswith("AMELI_") and not name.upper().startswith("AMELI_TEST_"):
            monkeypatch.delenv(name)
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("AMELI_DATABASE_URL", url)
    return url


def stored(database_url: str, nir_value: str) -> tuple[Account | None, Affiliation]:
    async def read() -> tuple[Account | None, Affiliation]:
        database = Database(database_url)
        try:
            account = await SqlAccountRepository(database).get_by_nir(nir_value)
            return account, await SqlIdentityRegistry(database).affiliation(nir_value)
        finally:
            await database.dispose()

    return asyncio.run(read())


def test_migrate_then_import_accounts(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate` then `accounts import` load the CSV with hashed passwords and the RFI column."""
    assert main(["migrate"]) == 0
    csv = tmp_path / "accounts.csv"
    csv.write_text(
        HEADER
        + f"{nir(1)},Secret-1,a@b.fr,true,0612345678,affiliated\n"
        + f"{nir(2, with_key=False)},Secret-2,,false,,pending\n",
        encoding="utf-8",
    )
    assert main(["accounts", "import", str(csv)]) == 0
    assert "created 2, updated 0, skipped 0" in capsys.readouterr().out
    account, affiliation = stored(database_url, nir(1, with_key=False))
    assert affiliation is Affiliation.AFFILIATED
    assert account is not None
    assert "Secret-1" not in account.password_hash
    assert account.password_hash.startswith("$argon2id$")
    assert stored(database_url, nir(2, with_key=False))[1] is Affiliation.PENDING


@pytest.mark.parametrize(
    ("row", "complaint"),
    [
        (f"{nir(3)[:-1]}0,x,,false,,affiliated", "invalid NIR"),
        (f"{nir(3)},x,,peut-être,,affiliated", "email_validated"),
        (f"{nir(3)},x,,false,,inconnu", "affiliation"),
        (f"{nir(3)},,,false,,affiliated", "password"),
    ],
)
def test_import_refuses_a_bad_line_without_quoting_it(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    row: str,
    complaint: str,
) -> None:
    """A bad CSV line fails the import with its line number, never its content."""
    csv = tmp_path / "bad.csv"
    csv.write_text(HEADER + row + "\n", encoding="utf-8")
    assert main(["accounts", "import", str(csv)]) == 1
    error = capsys.readouterr().err
    assert complaint in error
    assert nir(3)[:13] not in error


@pytest.mark.parametrize(
    ("phone", "complaint"),
    [
        pytest.param("01 23 45 67 89", "not a mobile number", id="metropolitan landline"),
        pytest.param("0590 20 12 34", "not a mobile number", id="Guadeloupe landline"),
        pytest.param("09 12 34 56 78", "not a mobile number", id="internet telephony"),
        pytest.param("06 12 34", "not a valid phone number", id="too short"),
        pytest.param("appeler le 3646", "not a valid phone number", id="words"),
    ],
)
def test_import_refuses_a_phone_that_cannot_get_the_sms(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    phone: str,
    complaint: str,
) -> None:
    """A mobile_phone that is a landline or garbage fails the import at its line, unquoted."""
    csv = tmp_path / "phones.csv"
    csv.write_text(
        HEADER
        + f"{nir(4)},Secret-4,,false,0690 12 34 56,affiliated\n"
        + f"{nir(5)},Secret-5,,false,{phone},affiliated\n",
        encoding="utf-8",
    )
    assert main(["accounts", "import", str(csv)]) == 1
    error = capsys.readouterr().err
    assert f"line 3: mobile_phone is {complaint}" in error
    assert phone not in error
    assert nir(5)[:13] not in error
    assert stored(database_url, nir(5, with_key=False))[0] is None


def test_import_keeps_an_overseas_mobile(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Overseas mobiles in national or international form are imported as typed."""
    csv = tmp_path / "overseas.csv"
    csv.write_text(
        HEADER
        + f"{nir(6)},Secret-6,,false,0639 01 23 45,affiliated\n"
        + f"{nir(7)},Secret-7,,false,+596 696 20 12 34,affiliated\n",
        encoding="utf-8",
    )
    assert main(["accounts", "import", str(csv)]) == 0
    assert "created 2, updated 0, skipped 0" in capsys.readouterr().out
    for number, phone in ((6, "0639 01 23 45"), (7, "+596 696 20 12 34")):
        account = stored(database_url, nir(number, with_key=False))[0]
        assert account is not None
        assert account.mobile_phone == phone


def test_a_loaded_row_with_a_landline_is_refused_by_its_number(database_url: str) -> None:
    """Rows that are not CSV lines (the demo set) are checked too, named by their rank."""
    rows = [
        AccountRow(nir(8), "Secret-8", None, False, "06 12 34 56 78", Affiliation.AFFILIATED),
        AccountRow(nir(9), "Secret-9", None, False, "0262 16 12 34", Affiliation.AFFILIATED),
    ]
    with pytest.raises(ImportRowError, match=r"^account 2: mobile_phone is not a mobile number"):
        asyncio.run(import_accounts(Settings(), rows))
    assert stored(database_url, nir(9, with_key=False))[0] is None


def test_import_requires_the_columns(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV without the expected header is refused, naming the missing columns."""
    csv = tmp_path / "headless.csv"
    csv.write_text("nir,password\n1,2\n", encoding="utf-8")
    assert main(["accounts", "import", str(csv)]) == 1
    assert "missing columns" in capsys.readouterr().err


def test_demo_data_loads_one_nir_per_case(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`demo-data` loads and prints every demo NIR; running it twice keeps one account each."""
    assert main(["demo-data"]) == 0
    assert main(["demo-data"]) == 0
    out = capsys.readouterr().out
    for case in DEMO_CASES:
        assert case.row.nir in out
        account, affiliation = stored(database_url, case.row.nir[:13])
        assert account is not None
        assert affiliation is case.row.affiliation


def test_purge_deletes_only_expired_rows(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`purge` deletes trusted devices and provisional codes past their expiry, nothing else."""
    assert main(["demo-data"]) == 0
    now = datetime.now(UTC)

    async def seed() -> None:
        database = Database(database_url)
        try:
            account = await SqlAccountRepository(database).get_by_nir(DEMO_CASES[0].row.nir[:13])
            assert account is not None
            devices = SqlTrustedDeviceRepository(database)
            for name, expire in (
                ("old", now - timedelta(days=1)),
                ("new", now + timedelta(days=1)),
            ):
                await devices.add(TrustedDevice(name * 8, account.account_id, now, expire))
            await SqlProvisionalCodeRepository(database).put(
                ProvisionalCode(nir(9, with_key=False), "hash", now - timedelta(minutes=1))
            )
        finally:
            await database.dispose()

    async def remaining_devices() -> list[str]:
        database = Database(database_url)
        try:
            devices = SqlTrustedDeviceRepository(database)
            return [name for name in ("old", "new") if await devices.find(name * 8)]
        finally:
            await database.dispose()

    asyncio.run(seed())
    capsys.readouterr()
    assert main(["purge"]) == 0
    out = capsys.readouterr().out
    assert "trusted_devices: 1 expired row(s) deleted" in out
    assert "provisional_codes: 1 expired row(s) deleted" in out
    assert asyncio.run(remaining_devices()) == ["new"]


def write_accounts(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def test_import_skips_existing_accounts_unless_update(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second import leaves existing accounts as they are (counted as skipped); --update
    replaces their password, email and affiliation, keeping their id."""
    first = write_accounts(
        tmp_path / "first.csv",
        f"{nir(20)},Premier-1,a@b.fr,true,,affiliated",
        f"{nir(21)},Premier-2,,false,,affiliated",
    )
    again = write_accounts(
        tmp_path / "again.csv",
        f"{nir(20)},Second-1,c@d.fr,true,,pending",
        f"{nir(21)},Second-2,,false,,affiliated",
        f"{nir(22)},Second-3,,false,,affiliated",
    )
    assert main(["accounts", "import", str(first)]) == 0
    before, _ = stored(database_url, nir(20, with_key=False))
    capsys.readouterr()

    assert main(["accounts", "import", str(again)]) == 0

    assert "created 1, updated 0, skipped 2 (existing accounts; --update replaces them)" in (
        capsys.readouterr().out
    )
    kept, affiliation = stored(database_url, nir(20, with_key=False))
    assert kept == before
    assert affiliation is Affiliation.AFFILIATED

    assert main(["accounts", "import", "--update", str(again)]) == 0

    assert capsys.readouterr().out.strip() == "created 0, updated 3, skipped 0"
    replaced, affiliation = stored(database_url, nir(20, with_key=False))
    assert before is not None
    assert replaced is not None
    assert replaced.account_id == before.account_id
    assert replaced.password_hash != before.password_hash
    assert replaced.email == "c@d.fr"
    assert affiliation is Affiliation.PENDING


def test_demo_data_never_overwrites_an_account(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account that holds a demo NIR keeps its email and password; demo-data says so."""
    demo_nir = DEMO_CASES[0].row.nir
    csv = write_accounts(
        tmp_path / "real.csv", f"{demo_nir},Vrai-Mot-de-passe-1,vraie@personne.fr,true,,affiliated"
    )
    assert main(["accounts", "import", str(csv)]) == 0
    before, _ = stored(database_url, demo_nir[:13])
    capsys.readouterr()

    assert main(["demo-data"]) == 0

    out = capsys.readouterr().out
    assert f"{demo_nir}  {DEMO_CASES[0].case}  (exists already: left as it is)" in out
    assert f"{DEMO_CASES[1].row.nir}  {DEMO_CASES[1].case}\n" in out
    assert stored(database_url, demo_nir[:13])[0] == before


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AMELI_LISTEN", "0.0.0.0:50051"),
        ("AMELI_PORTAL_API_KEYS", "gateway:some-key"),
        ("AMELI_ADVISOR_API_KEYS", "some-key"),
    ],
)
def test_demo_data_refuses_outside_development(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    """With caller keys or a public address, demo-data refuses (status 2) and loads nothing."""
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("AMELI_LOG_FORMAT", "json")

    assert main(["demo-data"]) == 2

    captured = capsys.readouterr()
    [line] = [json.loads(line) for line in captured.err.splitlines() if line.strip()]
    assert line["event"] == "refusing_to_start"
    assert line["variable"] == variable
    assert "some-key" not in captured.err
    assert captured.out == ""
    assert not (Path(database_url.removeprefix("sqlite+aiosqlite:///"))).exists()
