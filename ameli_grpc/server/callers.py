"""Who may call: the applications' bearer keys, their roles, and each role's RPCs (SPEC §5)."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence


class Role(enum.Enum):
    PORTAL = "portal"
    ADVISOR = "advisor"


ALLOWED_METHODS: dict[Role, frozenset[str]] = {
    Role.PORTAL: frozenset({"CheckCredentials", "RequestCode", "VerifyCode", "GetLockStatus"}),
    Role.ADVISOR: frozenset({"GetLockStatus", "ResetAccount"}),
}


class CallerKeys:
    """The bearer keys of the calling applications; with none configured, dev mode lets all in."""

    def __init__(self, keys: Mapping[Role, frozenset[str]]) -> None:
        self._roles: dict[bytes, set[Role]] = {}
        for role, role_keys in keys.items():
            for key in role_keys:
                self._roles.setdefault(_fingerprint(key), set()).add(role)

    @property
    def open(self) -> bool:
        return not self._roles

    def roles(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> set[Role] | None:
        """The roles of the presented key; None when no known key is presented."""
        if self.open:
            return set(Role)
        for name, value in metadata or ():
            if (
                name == "authorization"
                and isinstance(value, str)
                and value[:7].lower() == "bearer "
            ):
                return self._roles.get(_fingerprint(value[7:].strip()))
        return None


def _fingerprint(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
