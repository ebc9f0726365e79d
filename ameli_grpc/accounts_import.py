"""Loading accounts: the CSV import of the CLI and the demo set share this path."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ameli_grpc.domain.errors import AuthError
from ameli_grpc.domain.model import Account, Affiliation
from ameli_grpc.domain.nir import Nir
from ameli_grpc.domain.phone import InvalidPhoneNumber, PhoneNumber
from ameli_grpc.domain.ports import AccountRepository, AffiliationRecords, PasswordHasher

COLUMNS = ("nir", "password", "email", "email_validated", "mobile_phone", "affiliation")
_TRUE = {"1", "true", "yes", "oui", "y", "o"}
_FALSE = {"0", "false", "no", "non", "n", ""}


@dataclass(frozen=True)
class AccountRow:
    """One account to load; ``nir`` as typed (13 or 15 characters)."""

    nir: str
    password: str
    email: str | None
    email_validated: bool
    mobile_phone: str | None
    affiliation: Affiliation


class ImportRowError(ValueError):
    """A CSV line that cannot be loaded; the message names the line, never its content."""


def read_csv(path: Path) -> Iterator[AccountRow]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ImportRowError(f"missing columns: {', '.join(sorted(missing))}")
        for line, record in enumerate(reader, start=2):
            yield _row(line, record)


def _row(line: int, record: dict[str, str]) -> AccountRow:
    def cell(name: str) -> str:
        return (record.get(name) or "").strip()

    validated = cell("email_validated").lower()
    if validated not in _TRUE | _FALSE:
        raise ImportRowError(f"line {line}: email_validated must be true or false")
    try:
        affiliation = Affiliation(cell("affiliation").lower() or "affiliated")
    except ValueError:
        raise ImportRowError(
            f"line {line}: affiliation must be affiliated, pending or not_covered"
        ) from None
    if not cell("password"):
        raise ImportRowError(f"line {line}: password is empty")
    phone_problem = _mobile_phone_problem(cell("mobile_phone"))
    if phone_problem:
        raise ImportRowError(f"line {line}: {phone_problem}")
    return AccountRow(
        nir=cell("nir"),
        password=cell("password"),
        email=cell("email") or None,
        email_validated=validated in _TRUE,
        mobile_phone=cell("mobile_phone") or None,
        affiliation=affiliation,
    )


def _mobile_phone_problem(phone: str | None) -> str | None:
    """Why ``phone`` cannot be the mobile on file (the SMS of an advisor's reset), if it cannot."""
    if not phone:
        return None
    try:
        number = PhoneNumber.parse(phone)
    except InvalidPhoneNumber:
        return "mobile_phone is not a valid phone number"
    if not number.mobile:
        return "mobile_phone is not a mobile number (a landline cannot receive an SMS)"
    return None


@dataclass
class ImportCounts:
    """What an import did; ``skipped_nirs`` are the NIRs (13 characters) left as they were."""

    created: int = 0
    updated: int = 0
    skipped_nirs: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.skipped_nirs)


async def load_accounts(
    rows: Iterable[AccountRow],
    accounts: AccountRepository,
    registry: AffiliationRecords,
    hasher: PasswordHasher,
    *,
    update: bool = False,
) -> ImportCounts:
    """Create each new account (argon2id hash) and its RFI affiliation.

    An account that exists already (same NIR) is skipped, untouched, unless
    ``update``: then its password, email, phone and affiliation are replaced
    (it keeps its id). An import never resets a password by surprise.
    """
    counts = ImportCounts()
    for number, row in enumerate(rows, start=1):
        try:
            nir = Nir.parse(row.nir).value
        except AuthError:
            raise ImportRowError(f"account {number}: invalid NIR") from None
        phone_problem = _mobile_phone_problem(row.mobile_phone)
        if phone_problem:  # rows that did not come from a CSV line (the demo set, tests)
            raise ImportRowError(f"account {number}: {phone_problem}")
        exists = await accounts.get_by_nir(nir) is not None
        if exists and not update:
            counts.skipped_nirs.append(nir)
            continue
        await accounts.add(  # an existing account of that NIR keeps its id (upsert)
            Account(
                account_id=uuid.uuid4().hex,
                nir=nir,
                password_hash=await hasher.hash(row.password),
                email=row.email,
                email_validated=row.email_validated and bool(row.email),
                mobile_phone=row.mobile_phone,
            )
        )
        await registry.set_affiliation(nir, row.affiliation)
        if exists:
            counts.updated += 1
        else:
            counts.created += 1
    return counts
