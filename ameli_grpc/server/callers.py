"""Who may call: the applications' named keys, their roles, each role's RPCs and channels.

SPEC §7.1: portal keys may claim the web and FranceConnect channels; only the
mobile back end's keys may claim ``CHANNEL_MOBILE_APP`` (the password-only
login). With no key configured at all (development on loopback) every call and
every channel is accepted.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from ameli_grpc.domain.model import Channel


class Role(enum.Enum):
    PORTAL = "portal"
    MOBILE = "mobile"
    ADVISOR = "advisor"


_LOGIN_METHODS = frozenset({"CheckCredentials", "RequestCode", "VerifyCode", "GetLockStatus"})
ALLOWED_METHODS: dict[Role, frozenset[str]] = {
    Role.PORTAL: _LOGIN_METHODS,
    Role.MOBILE: _LOGIN_METHODS,
    Role.ADVISOR: frozenset(
        {"GetLockStatus", "GetAccount", "ResetAccount", "UnlockAccount", "RevokeTrustedDevices"}
    ),
}
CLAIMABLE_CHANNELS: dict[Role, frozenset[Channel]] = {
    Role.PORTAL: frozenset({Channel.WEB, Channel.FRANCECONNECT}),
    Role.MOBILE: frozenset({Channel.MOBILE_APP, Channel.WEB, Channel.FRANCECONNECT}),
    Role.ADVISOR: frozenset(),
}


@dataclass(frozen=True)
class Caller:
    """A calling application: its name (logged, never its key) and its roles."""

    name: str
    roles: frozenset[Role]
    # What the roles allow together, from the tables above (asked twice per call).
    methods: frozenset[str] = field(init=False, repr=False, compare=False)
    channels: frozenset[Channel] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        methods = frozenset[str]().union(*(ALLOWED_METHODS[role] for role in self.roles))
        channels = frozenset[Channel]().union(*(CLAIMABLE_CHANNELS[role] for role in self.roles))
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "channels", channels)

    def may_call(self, method: str) -> bool:
        return method in self.methods

    def may_claim(self, channel: Channel) -> bool:
        return channel in self.channels


DEVELOPMENT_CALLER = Caller("development", frozenset(Role))

# The caller of the call under way, set by the interceptor for the servicer's channel check
# (no default: a call that did not go through the interceptor fails instead of passing).
current_caller: ContextVar[Caller] = ContextVar("current_caller")


class CallerKeys:
    """The bearer keys of the calling applications; with none configured, dev mode lets all in.

    ``entries`` gives each role its ``(name, key)`` pairs. A key listed under
    several roles has them all, under the name it was first given.
    """

    def __init__(self, entries: Mapping[Role, Sequence[tuple[str, str]]]) -> None:
        names: dict[bytes, str] = {}
        roles: dict[bytes, set[Role]] = {}
        for role, pairs in entries.items():
            for name, key in pairs:
                fingerprint = _fingerprint(key)
                names.setdefault(fingerprint, name)
                roles.setdefault(fingerprint, set()).add(role)
        self._callers = {fp: Caller(names[fp], frozenset(roles[fp])) for fp in names}

    @property
    def open(self) -> bool:
        return not self._callers

    def count(self, role: Role) -> int:
        """How many callers have ``role`` (for the start-up summary)."""
        return sum(role in caller.roles for caller in self._callers.values())

    def caller(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Caller | None:
        """The caller whose key is presented; None when no known key is presented."""
        if self.open:
            return DEVELOPMENT_CALLER
        for name, value in metadata or ():
            if (
                name == "authorization"
                and isinstance(value, str)
                and value[:7].lower() == "bearer "
            ):
                return self._callers.get(_fingerprint(value[7:].strip()))
        return None


def _fingerprint(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
