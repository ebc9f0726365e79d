"""Client regulation, SPEC §7.4: wrong entries are counted per client address as well."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from ipaddress import IPv4Address, ip_address, ip_network

import pytest
from fakes import (
    NIR,
    PASSWORD,
    START,
    Fakes,
    Service,
    credentials,
    make_service,
    refusal,
    send_code,
    start_login,
    wrong_code,
)

from ameli_grpc.domain.clients import (
    is_allowlisted,
    parse_client_address,
    parse_networks,
    regulated_unit,
)
from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.model import NirStatus
from ameli_grpc.domain.outcomes import ClientInfo, CodeRequired
from ameli_grpc.domain.policy import Policy
from ameli_grpc.domain.tokens import Keyring

LIMIT = 5
POLICY = Policy(client_failure_limit=LIMIT)
SPRAYER = "192.0.2.7"  # the address of fakes.credentials()
THROTTLED_1547 = (
    "Trop de tentatives de connexion depuis votre appareil. Merci de réessayer après le "
    "04/01/2023 - 15h47 (heure de Paris)."
)


def sprayed_nir(serial: int) -> str:
    """Another valid NIR (13 characters) for each serial: the sprayer's list of victims."""
    return f"18001751{serial:05d}"


async def spray(service: Service, count: int, ip: str = SPRAYER, first: int = 0) -> list[AuthError]:
    """``count`` wrong passwords from ``ip``, one NIR each (never reaching a NIR's own limit)."""
    return [
        await refusal(
            service.login.check_credentials(
                replace(credentials(sprayed_nir(serial), "Printemps2023!"), client_ip=ip)
            )
        )
        for serial in range(first, first + count)
    ]


async def nir_status(fakes: Fakes, nir: str) -> NirStatus:
    return await fakes.store.status(
        fakes.nir_ref(nir), fakes.clock.now(), timedelta(minutes=15), timedelta(hours=1)
    )


# --- the address: pure rules ---------------------------------------------------------------


def test_an_ipv4_address_is_its_own_unit() -> None:
    """Each IPv4 address is counted alone."""
    address = parse_client_address("203.0.113.7")

    assert address == IPv4Address("203.0.113.7")
    assert regulated_unit(address) == "203.0.113.7"


def test_ipv6_addresses_are_grouped_by_their_64() -> None:
    """Addresses of one IPv6 /64 are one unit; the next /64 is another."""
    units = {
        ip: regulated_unit(address)
        for ip in ("2001:db8:1:2::1", "2001:DB8:1:2:ffff:ffff:ffff:fffe", "fe80::1%eth0")
        if (address := parse_client_address(ip)) is not None
    }
    other = parse_client_address("2001:db8:1:3::1")

    assert units == {
        "2001:db8:1:2::1": "2001:db8:1:2::/64",
        "2001:DB8:1:2:ffff:ffff:ffff:fffe": "2001:db8:1:2::/64",
        "fe80::1%eth0": "fe80::/64",
    }
    assert other is not None
    assert regulated_unit(other) == "2001:db8:1:3::/64"


def test_an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address() -> None:
    """``::ffff:203.0.113.7`` is the same unit as ``203.0.113.7``."""
    address = parse_client_address("::ffff:203.0.113.7")

    assert address == IPv4Address("203.0.113.7")
    assert address is not None
    assert regulated_unit(address) == "203.0.113.7"


def test_no_address_is_not_regulated() -> None:
    """An empty address (the gateway sent none) means nothing to regulate."""
    assert parse_client_address("") is None


@pytest.mark.parametrize(
    "bad",
    [
        "not-an-ip",
        "300.1.1.1",
        "192.0.2",
        "192.0.2.7:443",
        " 192.0.2.7",
        "2001:db8::/64",
        "1" * 600,
    ],
)
def test_an_address_that_does_not_parse_is_a_value_error(bad: str) -> None:
    """Anything but one address raises ValueError (the request validator refuses it first)."""
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        parse_client_address(bad)


def test_the_allowlist_is_read_from_cidrs_and_matches_addresses_inside() -> None:
    """Comma-separated CIDRs (bare addresses too); an address inside one is allowlisted."""
    allowlist = parse_networks(" 198.51.100.0/24, 2001:db8:aa::/48,,203.0.113.9 ")

    assert allowlist == (
        ip_network("198.51.100.0/24"),
        ip_network("2001:db8:aa::/48"),
        ip_network("203.0.113.9/32"),
    )
    inside = ("198.51.100.200", "2001:db8:aa:ffff::1", "203.0.113.9", "::ffff:198.51.100.1")
    outside = ("198.51.101.1", "2001:db8:ab::1", "203.0.113.10")
    for ip in inside:
        address = parse_client_address(ip)
        assert address is not None
        assert is_allowlisted(address, allowlist), ip
    for ip in outside:
        assert not is_allowlisted(ip_address(ip), allowlist), ip
    assert parse_networks("") == ()


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.1/8", "nat.example.fr", "10.0.0.0/8;"])
def test_a_malformed_allowlist_entry_is_refused_by_name(bad: str) -> None:
    """A CIDR that does not parse (or has host bits set) is refused, naming the entry."""
    with pytest.raises(ValueError, match="not a network in CIDR notation") as caught:
        parse_networks(f"192.0.2.0/24,{bad}")

    assert repr(bad) in str(caught.value)


def test_the_store_reference_of_an_address_is_a_keyed_hash() -> None:
    """``client_ref`` hides the address, differs from a NIR ref of the same text, and is stable."""
    keyring = Keyring(b"k" * 32)

    ref = keyring.client_ref("203.0.113.7")

    assert ref == keyring.client_ref("203.0.113.7")
    assert ref != keyring.nir_ref("203.0.113.7")
    assert ref != Keyring(b"j" * 32).client_ref("203.0.113.7")
    assert "203" not in ref
    assert len(ref) == 32


# --- CheckCredentials and VerifyCode under regulation --------------------------------------


async def test_the_failure_that_reaches_the_limit_is_answered_as_usual_then_throttles() -> None:
    """Five wrong passwords on five NIRs are answered as usual; the sixth NIR gets
    CLIENT_THROTTLED, until the end of the 15-minute throttle, with the SPEC's message."""
    service, _ = make_service(POLICY)

    answers = await spray(service, LIMIT)
    throttled = await refusal(service.login.check_credentials(credentials(sprayed_nir(99))))

    assert [error.reason for error in answers] == [ErrorReason.INVALID_CREDENTIALS] * LIMIT
    assert [error.attempts_remaining for error in answers] == [2] * LIMIT
    assert throttled.reason is ErrorReason.CLIENT_THROTTLED
    assert throttled.lock_expire_time == START + timedelta(minutes=15)
    assert throttled.message == THROTTLED_1547


async def test_a_throttled_address_is_refused_before_any_verify_and_counts_nothing() -> None:
    """Even the right password: no argon2 verify, no failure, no lock on the NIR, no audit."""
    service, fakes = make_service(POLICY)
    fakes.add_account()
    await spray(service, LIMIT)
    verifications, events = fakes.hasher.verifications, len(fakes.audit.events)

    for password in ("wrong", PASSWORD, PASSWORD, "wrong"):
        error = await refusal(service.login.check_credentials(credentials(NIR, password)))
        assert error.reason is ErrorReason.CLIENT_THROTTLED

    assert fakes.hasher.verifications == verifications
    assert len(fakes.audit.events) == events
    assert await nir_status(fakes, NIR) == NirStatus((), 0, 0, 0)


async def test_verify_code_from_a_throttled_address_is_refused_before_the_claim() -> None:
    """A code sent from a throttled address is refused; the NIR's code counter stays at zero."""
    service, fakes = make_service(POLICY)
    fakes.add_account()
    login_id = await start_login(service)  # from SPRAYER, before it sprays
    code = await send_code(service, fakes, login_id)
    await spray(service, LIMIT)

    for typed in (wrong_code(code), code):
        error = await refusal(
            service.login.verify_code(login_id, typed, False, ClientInfo(SPRAYER))
        )
        assert error.reason is ErrorReason.CLIENT_THROTTLED

    assert (await nir_status(fakes, NIR)).code_failures == 0
    verified = await service.login.verify_code(login_id, code, False, ClientInfo("198.51.100.1"))
    assert verified.authenticated.account_id


async def test_wrong_codes_count_against_the_address_too() -> None:
    """Wrong codes over two logins make up the limit; the address is then throttled."""
    service, fakes = make_service(POLICY)
    client = ClientInfo(SPRAYER)
    answers = []
    for nir, guesses in ((NIR, 3), (sprayed_nir(1), 2)):
        fakes.add_account(nir)
        login_id = await start_login(service, nir)
        code = await send_code(service, fakes, login_id)
        for _ in range(guesses):
            answers.append(
                await refusal(service.login.verify_code(login_id, wrong_code(code), False, client))
            )

    assert [error.reason for error in answers] == [
        ErrorReason.INVALID_CODE,
        ErrorReason.INVALID_CODE,
        ErrorReason.CODE_ATTEMPTS_LOCKED,
        ErrorReason.INVALID_CODE,
        ErrorReason.INVALID_CODE,  # the fifth: answered as usual, and throttles
    ]
    error = await refusal(service.login.check_credentials(credentials(sprayed_nir(2))))
    assert error.reason is ErrorReason.CLIENT_THROTTLED


async def test_another_address_is_not_affected() -> None:
    """While one address is throttled, another one logs in as usual."""
    service, fakes = make_service(POLICY)
    fakes.add_account()
    await spray(service, LIMIT)

    outcome = await service.login.check_credentials(
        replace(credentials(), client_ip="198.51.100.1")
    )

    assert isinstance(outcome, CodeRequired)


async def test_the_throttle_ends_after_the_client_lock() -> None:
    """Fifteen minutes later the address is served again, and its count starts afresh."""
    service, fakes = make_service(POLICY)
    fakes.add_account()
    await spray(service, LIMIT)

    fakes.clock.advance(minutes=14, seconds=59)
    assert (await refusal(service.login.check_credentials(credentials()))).reason is (
        ErrorReason.CLIENT_THROTTLED
    )
    fakes.clock.advance(seconds=1)
    assert isinstance(await service.login.check_credentials(credentials()), CodeRequired)
    (again,) = await spray(service, 1, first=50)
    assert again.reason is ErrorReason.INVALID_CREDENTIALS


async def test_failures_older_than_the_window_no_longer_count() -> None:
    """The window slides: failures older than ten minutes leave the address's count."""
    service, fakes = make_service(POLICY)
    await spray(service, LIMIT - 1)
    fakes.clock.advance(minutes=10)

    answers = await spray(service, LIMIT - 1, first=10)

    assert {error.reason for error in answers} == {ErrorReason.INVALID_CREDENTIALS}
    assert await fakes.store.client_throttle(fakes.keyring.client_ref(SPRAYER), START) is None


async def test_an_allowlisted_address_is_never_regulated() -> None:
    """A known NAT on the allowlist may fail any number of times without a throttle."""
    policy = replace(POLICY, client_allowlist=(ip_network("192.0.2.0/24"),))
    service, fakes = make_service(policy)

    answers = await spray(service, 3 * LIMIT)

    assert {error.reason for error in answers} == {ErrorReason.INVALID_CREDENTIALS}
    assert fakes.audit.of_kind("client_throttled") == []


async def test_an_ipv6_64_is_one_client() -> None:
    """Failures from addresses of one /64 add up; another /64 is not affected."""
    service, fakes = make_service(POLICY)
    fakes.add_account()
    for host in range(LIMIT):
        await spray(service, 1, ip=f"2001:db8:1:2::{host + 1:x}", first=host)

    same = replace(credentials(), client_ip="2001:db8:1:2:abcd::1")
    other = replace(credentials(), client_ip="2001:db8:1:3::1")
    assert (await refusal(service.login.check_credentials(same))).reason is (
        ErrorReason.CLIENT_THROTTLED
    )
    assert isinstance(await service.login.check_credentials(other), CodeRequired)


async def test_an_ipv4_mapped_address_shares_the_count_of_its_ipv4_address() -> None:
    """Failures from ``::ffff:192.0.2.7`` and ``192.0.2.7`` are one count."""
    service, _ = make_service(POLICY)
    await spray(service, 3, ip=f"::ffff:{SPRAYER}")
    await spray(service, LIMIT - 3, first=3)

    error = await refusal(service.login.check_credentials(credentials(sprayed_nir(99))))

    assert error.reason is ErrorReason.CLIENT_THROTTLED


async def test_without_an_address_nothing_is_regulated() -> None:
    """A request without ``client.ip`` is never throttled (the NIR's own limits still hold)."""
    service, fakes = make_service(POLICY)

    answers = await spray(service, 3 * LIMIT, ip="")
    verified = await refusal(service.login.verify_code("no-such-login", "123456", False))

    assert {error.reason for error in answers} == {ErrorReason.INVALID_CREDENTIALS}
    assert verified.reason is ErrorReason.LOGIN_NOT_FOUND
    assert fakes.audit.of_kind("client_throttled") == []


async def test_request_code_is_not_throttled() -> None:
    """RequestCode is not regulated: a code can still be sent to a login of that address."""
    service, fakes = make_service(POLICY)
    fakes.add_account()
    login_id = await start_login(service)
    await spray(service, LIMIT)

    sent = await service.login.request_code(login_id, ClientInfo(SPRAYER))

    assert sent.codes_remaining == 4


async def test_setting_the_throttle_is_audited_once_under_its_nir() -> None:
    """One ``client_throttled`` row, with the NIR whose failure set it and the address."""
    service, fakes = make_service(POLICY)
    await spray(service, LIMIT + 3)

    (event,) = fakes.audit.of_kind("client_throttled")

    assert event.nir_ref == fakes.nir_ref(sprayed_nir(LIMIT - 1))
    assert event.client_ip == SPRAYER
    assert event.detail == SPRAYER
    assert event.occurred_time == START


async def test_parallel_failures_set_the_throttle_once() -> None:
    """Fifty wrong passwords at once on fifty NIRs: one throttle, one audit row."""
    service, fakes = make_service(POLICY)

    answers = await asyncio.gather(
        *(
            refusal(service.login.check_credentials(credentials(sprayed_nir(n), "wrong")))
            for n in range(50)
        )
    )

    assert {error.reason for error in answers} == {ErrorReason.INVALID_CREDENTIALS}
    assert len(fakes.audit.of_kind("client_throttled")) == 1
    error = await refusal(service.login.check_credentials(credentials()))
    assert error.reason is ErrorReason.CLIENT_THROTTLED
