"""Client regulation (SPEC §7.4): wrong entries are also counted per client address.

Password spraying tries one password on many NIRs, so no NIR ever reaches
its own limit; counted per address, it does. The regulated unit is an IPv4
address, or the /64 of an IPv6 address (one household or one host gets a
/64); an IPv4-mapped IPv6 address counts as its IPv4 address. The store only
ever sees a keyed hash of that unit (``Keyring.client_ref``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from ameli_grpc.domain.audit import AuditKind, AuditTrail
from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.messages import Messages
from ameli_grpc.domain.outcomes import ClientInfo
from ameli_grpc.domain.policy import ClientNetwork, Policy
from ameli_grpc.domain.ports import CLIENT_THROTTLE, ChallengeStore, Events
from ameli_grpc.domain.tokens import Keyring

IPV6_GROUP_PREFIX = 64

ClientAddress = IPv4Address | IPv6Address


def parse_client_address(ip: str) -> ClientAddress | None:
    """The address a gateway sent; None if it sent none (then nothing is regulated).

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.7``) is its IPv4 address.
    Anything that is not an address raises ``ValueError``: the request
    validator (``ameli_grpc.server.validation``) refuses it before any call.
    """
    if not ip:
        return None
    address = ipaddress.ip_address(ip)
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def regulated_unit(address: ClientAddress) -> str:
    """What is counted: the IPv4 address itself, or the /64 network of an IPv6 address."""
    if isinstance(address, IPv4Address):
        return str(address)
    # From the integer: a scoped address ("fe80::1%eth0") has no network of its own.
    host_bits = 128 - IPV6_GROUP_PREFIX
    return str(IPv6Network((int(address) >> host_bits << host_bits, IPV6_GROUP_PREFIX)))


def is_allowlisted(address: ClientAddress, allowlist: tuple[ClientNetwork, ...]) -> bool:
    """Whether the address lies in one of the networks never regulated (a known NAT)."""
    return any(address in network for network in allowlist)


def parse_networks(text: str) -> tuple[ClientNetwork, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); ``ValueError`` names a bad one.

    Strict: ``10.0.0.1/8`` (host bits set) is refused rather than guessed.
    """
    networks: list[ClientNetwork] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as error:
            raise ValueError(f"{entry!r} is not a network in CIDR notation ({error})") from None
    return tuple(networks)


@dataclass(frozen=True)
class RegulatedClient:
    """A client address under regulation: its store reference, and what the audit names."""

    ref: str
    unit: str
    client: ClientInfo


class ClientRegulation:
    """Counts wrong entries per client address and refuses a throttled one (SPEC §7.4)."""

    def __init__(
        self,
        store: ChallengeStore,
        keyring: Keyring,
        policy: Policy,
        audit: AuditTrail,
        events: Events,
    ) -> None:
        self._store = store
        self._keyring = keyring
        self._policy = policy
        self._audit = audit
        self._events = events

    def identify(self, client: ClientInfo) -> RegulatedClient | None:
        """The regulated client; None without an address or on the allowlist.

        The address and user agent were checked by the request validator.
        """
        address = parse_client_address(client.ip)
        if address is None or is_allowlisted(address, self._policy.client_allowlist):
            return None
        unit = regulated_unit(address)
        return RegulatedClient(self._keyring.client_ref(unit), unit, client)

    async def admit(self, client: ClientInfo, now: datetime) -> RegulatedClient | None:
        """``identify``, then refuse a throttled address ``CLIENT_THROTTLED`` until it ends."""
        regulated = self.identify(client)
        if regulated is None:
            return None
        if self._keyring.rotating:  # its throttle and count under a previous key come along
            previous = self._keyring.previous_client_refs(regulated.unit)
            await self._store.adopt(regulated.ref, previous, now)
        until = await self._store.client_throttle(regulated.ref, now)
        if until is not None:
            raise AuthError(
                ErrorReason.CLIENT_THROTTLED,
                Messages.client_throttled(until),
                lock_expire_time=until,
            )
        return regulated

    async def count_failure(
        self, client: RegulatedClient | None, nir_ref: str, now: datetime, *, familiar: bool
    ) -> None:
        """An unfamiliar wrong password or code also counts against its client address.

        The failure that reaches the limit is still answered as usual; it sets
        the throttle, audited once (``client_throttled``) under the NIR it was for.
        """
        if client is None or familiar:
            return
        until = await self._store.count_client_failure(client.ref, self._policy.client_rule, now)
        if until is not None:
            self._events.lock_set(CLIENT_THROTTLE)
            await self._audit.record(
                AuditKind.CLIENT_THROTTLED, nir_ref, now, detail=client.unit, client=client.client
            )
