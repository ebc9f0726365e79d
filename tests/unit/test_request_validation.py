"""The request validator: one rule per text field, every field of every request walked."""

from __future__ import annotations

from typing import cast

import pytest
from ameli.auth.v1 import auth_pb2

from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.server.validation import FIELD_RULES, UNLISTED, check_request, text_field_paths

SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
NIR = "180017511200169"
ADVISOR = {"nir": NIR, "advisor_id": "conseiller-3646", "reason": "appel de l'assuré"}


def refusal(request: object) -> AuthError:
    with pytest.raises(AuthError) as caught:
        check_request(request)  # type: ignore[arg-type]
    return caught.value


def fields_of(error: AuthError) -> list[str]:
    return [violation.field for violation in error.violations]


def test_every_text_field_of_every_request_has_its_rule() -> None:
    """Each text field of each AuthService request (nested ones too) is in the table, and the
    table names no field that does not exist."""
    paths = {path for method in SERVICE.methods for path in text_field_paths(method.input_type)}

    assert paths - FIELD_RULES.keys() == set(), "a text field without a rule"
    assert FIELD_RULES.keys() - paths == set(), "a rule for no field"


def test_no_nested_field_is_required() -> None:
    """An absent sub-message is not walked, which is sound only while its fields may be empty."""
    for path, rule in FIELD_RULES.items():
        assert "." not in path or not rule.required, path


# (path, accepted, refused): the limits of the README's table.
CASES = [
    ("nir", [NIR, "1 80 01 75 112 001 69", "1\u00a080\u00a001 75 112 001 69"], ["", "\x00" * 13]),
    ("password", ["", "x" * 1024, "mot\u00a0de passe é"], ["x" * 1025, "faux\x00", "a\tb"]),
    ("device_token", ["", "t" * 256], ["t" * 257, "t\x7f", "t\u200b"]),
    ("login_id", ["", "é" * 50, "x" * 256], ["x" * 257, "a\nb"]),
    ("code", ["", "123 456", "1" * 64], ["1" * 65, "123\x00456"]),
    ("advisor_id", ["a", "a" * 64], ["", "   ", "a" * 65, "a\x00", "a\tb", "a\u00a0b"]),
    ("reason", ["r", "r" * 500, "appel\u00a0: perte"], ["", "  ", "r" * 501, "motif\nligne"]),
    ("client.ip", ["", "192.0.2.7", "2001:db8::1", "::ffff:192.0.2.7"], ["192.0.2.300", "1" * 65]),
    ("client.user_agent", ["", "M" * 512], ["M" * 513, "Mozilla\x00", "Mozilla\nX"]),
]


@pytest.mark.parametrize(("path", "accepted", "refused"), CASES, ids=[c[0] for c in CASES])
def test_each_field_rule(path: str, accepted: list[str], refused: list[str]) -> None:
    """Each rule accepts what the field may hold and refuses the rest."""
    rule = FIELD_RULES[path]
    for value in accepted:
        assert rule.allows(value), (path, value)
    for value in refused:
        assert not rule.allows(value), (path, value)


def test_a_scoped_address_with_a_nul_is_refused() -> None:
    """Python parses "fe80::1%<NUL>" as an address; the characters rule still refuses it."""
    assert not FIELD_RULES["client.ip"].allows("fe80::1%\x00")
    assert FIELD_RULES["client.ip"].allows("fe80::1%eth0")


def test_a_valid_request_passes() -> None:
    """Well-formed requests of every kind are left alone."""
    client = auth_pb2.ClientInfo(ip="192.0.2.7", user_agent="Mozilla/5.0")
    check_request(
        auth_pb2.CheckCredentialsRequest(
            nir=NIR, password="x", channel=auth_pb2.CHANNEL_MOBILE_APP, client=client
        )
    )
    check_request(auth_pb2.VerifyCodeRequest(login_id="a.b", code="123456", client=client))
    check_request(auth_pb2.ResetAccountRequest(**ADVISOR, send_provisional_code=True))
    check_request(auth_pb2.RevokeTrustedDevicesRequest(**ADVISOR))


def test_every_offending_field_is_named_in_order() -> None:
    """All violations, in the order of the message, each with its French description."""
    error = refusal(
        auth_pb2.UnlockAccountRequest(nir=NIR, advisor_id="a" * 256, reason="motif\x00")
    )

    assert (error.reason, error.message) == (
        ErrorReason.INVALID_REQUEST,
        "La demande est incomplète ou invalide.",
    )
    assert [(v.field, v.description) for v in error.violations] == [
        ("advisor_id", "champ obligatoire, 64 caractères imprimables au plus"),
        ("reason", "champ obligatoire, 500 caractères au plus, sans caractère de contrôle"),
    ]


def test_a_bad_nir_among_them_makes_it_invalid_nir() -> None:
    """A NIR among the offending fields: INVALID_NIR with its text, the others still named."""
    error = refusal(auth_pb2.GetLockStatusRequest(nir=NIR[:-1]))
    both = refusal(auth_pb2.ResetAccountRequest(nir="\x00", reason="r"))

    assert (error.reason, fields_of(error)) == (ErrorReason.INVALID_NIR, ["nir"])
    assert error.message.startswith("Le numéro de sécurité sociale saisi n'est pas valide.")
    assert error.violations[0].description == "13 caractères, ou 15 avec la clé"
    assert (both.reason, fields_of(both)) == (ErrorReason.INVALID_NIR, ["nir", "advisor_id"])


def test_a_nested_message_is_walked() -> None:
    """ClientInfo's fields are checked under their path."""
    request = auth_pb2.RequestCodeRequest(
        login_id="a.b", client=auth_pb2.ClientInfo(ip="10.0.0.1, 10.0.0.2", user_agent="\x1b[31m")
    )

    assert fields_of(refusal(request)) == ["client.ip", "client.user_agent"]


def test_an_unknown_enum_value_is_refused_with_the_known_ones() -> None:
    """Proto3 keeps an unknown enum number; the validator refuses it, listing the values."""
    unknown = cast("auth_pb2.Channel.ValueType", 99)
    error = refusal(auth_pb2.CheckCredentialsRequest(nir=NIR, password="x", channel=unknown))

    assert [(v.field, v.description) for v in error.violations] == [
        ("channel", "CHANNEL_WEB, CHANNEL_MOBILE_APP ou CHANNEL_FRANCECONNECT")
    ]


def test_a_field_without_a_rule_gets_the_strict_one() -> None:
    """Any message is walked the same way: lists get their index, a text field unknown to the
    table gets ``UNLISTED`` (64 printable characters), enums their known values."""
    message = auth_pb2.GetLockStatusResponse(
        locks=[
            auth_pb2.Lock(message="ok"),
            auth_pb2.Lock(message="m" * 65, reason=cast("auth_pb2.ErrorReason.ValueType", 999)),
        ]
    )

    assert "locks.message" not in FIELD_RULES
    assert UNLISTED.max_length == 64
    assert fields_of(refusal(message)) == ["locks[1].reason", "locks[1].message"]
