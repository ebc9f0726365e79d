"""What ``ameli-advisor`` prints: French lines for the advisor, or one JSON object.

Times are shown in Paris time, an end rounded up to the minute (as in the
messages the insured person sees); in JSON they are RFC 3339 in UTC, ``null``
when unset, and enums are their names without prefix (``PASSWORD_ATTEMPTS_LOCKED``,
``UNTRUSTED_DEVICES``, ``AFFILIATED``), as ``ErrorInfo.reason`` names reasons.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.protobuf.timestamp_pb2 import Timestamp

from ameli.auth.v1 import auth_pb2

__all__ = [
    "JsonValue",
    "account_lines",
    "json_account",
    "json_line",
    "json_reset",
    "json_status",
    "json_time",
    "masked_nir",
    "reset_lines",
    "status_lines",
    "when",
]

JsonValue = str | int | bool | None | list["JsonValue"] | dict[str, "JsonValue"]

_LOCK_LABELS = {
    auth_pb2.ERROR_REASON_PASSWORD_ATTEMPTS_LOCKED: "mots de passe erronés",
    auth_pb2.ERROR_REASON_CODE_ATTEMPTS_LOCKED: "codes de sécurité erronés",
    auth_pb2.ERROR_REASON_CODE_QUOTA_EXCEEDED: "trop de codes demandés",
    auth_pb2.ERROR_REASON_ACCOUNT_SUSPENDED: "compte suspendu",
}
_SCOPE_LABELS = {
    auth_pb2.LOCK_SCOPE_UNTRUSTED_DEVICES: ", appareils non reconnus",
    auth_pb2.LOCK_SCOPE_TRUSTED_DEVICES: ", appareils de confiance",
}
_AFFILIATIONS = {
    auth_pb2.AFFILIATION_AFFILIATED: "affilié au régime général ou à un régime partenaire",
    auth_pb2.AFFILIATION_PENDING: "rattachement à une caisse en cours (connexion refusée d'ici là)",
    auth_pb2.AFFILIATION_NOT_COVERED: (
        "ne dépend ni du régime général ni d'un régime partenaire (connexion refusée)"
    ),
}


def masked_nir(nir: str) -> str:
    """The NIR as ``180**********42``: enough for the advisor to check, not to reuse."""
    compact = "".join(nir.split())
    return compact[:3] + "*" * max(len(compact) - 5, 0) + compact[-2:]


def _paris() -> tuple[tzinfo, str]:
    try:
        return ZoneInfo("Europe/Paris"), "heure de Paris"
    except ZoneInfoNotFoundError:  # no system tz database and no tzdata package
        return UTC, "UTC"


def when(timestamp: Timestamp, *, round_up: bool = False) -> str:
    """``04/01/2023 à 15h47 (heure de Paris)``; an end time is rounded up to the minute."""
    zone, label = _paris()
    moment = timestamp.ToDatetime(tzinfo=UTC)
    if round_up:
        moment = datetime.fromtimestamp(math.ceil(moment.timestamp() / 60) * 60, UTC)
    return f"{moment.astimezone(zone):%d/%m/%Y à %Hh%M} ({label})"


# --- French lines -------------------------------------------------------------


def status_lines(nir: str, status: auth_pb2.GetLockStatusResponse) -> Iterator[str]:
    yield f"NIR {masked_nir(nir)} : {'BLOQUÉ' if status.locked else 'non bloqué'}"
    yield from _lock_lines(status.locks)
    yield from _counter_lines(status)


def account_lines(nir: str, account: auth_pb2.GetAccountResponse) -> Iterator[str]:
    yield f"Compte ameli du NIR {masked_nir(nir)}"
    if account.masked_email:
        validated = "validée" if account.email_validated else "non validée : aucun code envoyé"
        yield f"  Adresse mail : {account.masked_email} ({validated})"
    else:
        yield "  Adresse mail : aucune (aucun code de sécurité ne peut être envoyé)"
    phone = account.masked_phone or "aucun (pas de code provisoire par SMS)"
    yield f"  Téléphone mobile : {phone}"
    affiliation = _AFFILIATIONS.get(account.affiliation, "inconnue")
    yield f"  Affiliation (RFI) : {affiliation}"
    devices = account.trusted_devices
    yield f"Appareils de confiance : {len(devices) or 'aucun'}"
    for device in devices:
        used = (
            f"dernière connexion sans code le {when(device.last_use_time)}"
            if device.HasField("last_use_time")
            else "pas encore de connexion sans code"
        )
        yield (
            f"- enregistré le {when(device.create_time)}, "
            f"jusqu'au {when(device.expire_time, round_up=True)} ; {used}"
        )
    yield f"Blocages : {len(account.locks) or 'aucun'}"
    yield from _lock_lines(account.locks)
    yield ("Suspension : OUI, à lever par « unlock »" if account.suspended else "Suspension : non")
    yield from _counter_lines(account)


def reset_lines(done: auth_pb2.ResetAccountResponse, code_asked: bool) -> Iterator[str]:
    yield f"Compte réinitialisé le {when(done.reset_time)}."
    if done.provisional_code_sent:
        until = when(done.provisional_code_expire_time, round_up=True)
        yield f"Code provisoire envoyé par SMS au {done.masked_phone}, valable jusqu'au {until}."
    elif code_asked:
        yield "Aucun code provisoire envoyé : pas de téléphone mobile enregistré."
    else:
        yield "Aucun code provisoire envoyé (non demandé)."


def _lock_lines(locks: Iterable[auth_pb2.Lock]) -> Iterator[str]:
    for lock in locks:
        label = _LOCK_LABELS.get(lock.reason, auth_pb2.ErrorReason.Name(lock.reason))
        scope = _SCOPE_LABELS.get(lock.scope, "")
        if lock.HasField("expire_time"):
            yield f"- Blocage ({label}{scope}) jusqu'au {when(lock.expire_time, round_up=True)}"
        else:  # a suspension: only an advisor's unlock or reset lifts it
            yield f"- Blocage ({label}{scope}) sans date de fin : à lever par « unlock »"
        yield f"  Message affiché à l'assuré : {lock.message}"


def _counter_lines(
    counters: auth_pb2.GetLockStatusResponse | auth_pb2.GetAccountResponse,
) -> Iterator[str]:
    yield "Compteurs :"
    yield f"  échecs de mot de passe : {counters.password_failures}"
    yield f"  échecs de code : {counters.code_failures}"
    yield f"  codes envoyés dans l'heure : {counters.codes_sent_in_window}"


# --- JSON ---------------------------------------------------------------------


def json_line(payload: Mapping[str, JsonValue]) -> str:
    """One JSON object on one line, accents kept."""
    return json.dumps(payload, ensure_ascii=False)


def json_time(timestamp: Timestamp, present: bool = True) -> str | None:
    """RFC 3339 in UTC (``2023-01-04T14:47:00Z``), None for an unset field."""
    return timestamp.ToJsonString() if present else None


def json_status(status: auth_pb2.GetLockStatusResponse) -> dict[str, JsonValue]:
    return {"locked": status.locked, "locks": _json_locks(status.locks), **_json_counters(status)}


def json_account(account: auth_pb2.GetAccountResponse) -> dict[str, JsonValue]:
    devices: list[JsonValue] = [
        {
            "create_time": json_time(device.create_time),
            "expire_time": json_time(device.expire_time),
            "last_use_time": json_time(device.last_use_time, device.HasField("last_use_time")),
        }
        for device in account.trusted_devices
    ]
    affiliation = auth_pb2.Affiliation.Name(account.affiliation).removeprefix("AFFILIATION_")
    return {
        "masked_email": account.masked_email,
        "email_validated": account.email_validated,
        "masked_phone": account.masked_phone,
        "affiliation": affiliation,
        "trusted_devices": devices,
        "locks": _json_locks(account.locks),
        "suspended": account.suspended,
        **_json_counters(account),
    }


def json_reset(done: auth_pb2.ResetAccountResponse) -> dict[str, JsonValue]:
    sent = done.provisional_code_sent
    return {
        "reset_time": json_time(done.reset_time),
        "provisional_code_sent": sent,
        "masked_phone": done.masked_phone,
        "provisional_code_expire_time": json_time(done.provisional_code_expire_time, sent),
    }


def _json_locks(locks: Iterable[auth_pb2.Lock]) -> list[JsonValue]:
    return [
        {
            "reason": auth_pb2.ErrorReason.Name(lock.reason).removeprefix("ERROR_REASON_"),
            "scope": auth_pb2.LockScope.Name(lock.scope).removeprefix("LOCK_SCOPE_"),
            "expire_time": json_time(lock.expire_time, lock.HasField("expire_time")),
            "message": lock.message,
        }
        for lock in locks
    ]


def _json_counters(
    counters: auth_pb2.GetLockStatusResponse | auth_pb2.GetAccountResponse,
) -> dict[str, JsonValue]:
    return {
        "password_failures": counters.password_failures,
        "code_failures": counters.code_failures,
        "codes_sent_in_window": counters.codes_sent_in_window,
    }
