"""The phone on file: its E.164 form overseas included, and which numbers can get an SMS."""

from __future__ import annotations

import pytest

from ameli_grpc.domain.masking import mask_phone
from ameli_grpc.domain.phone import InvalidPhoneNumber, PhoneNumber


@pytest.mark.parametrize(
    ("phone", "e164"),
    [
        pytest.param("0690 12 34 56", "+590690123456", id="Guadeloupe 0690"),
        pytest.param("0691 22 12 34", "+590691221234", id="Guadeloupe 0691"),
        pytest.param("0690 00 12 34", "+590690001234", id="Saint-Martin, Saint-Barthélemy"),
        pytest.param("0694 20 12 34", "+594694201234", id="Guyane 0694"),
        pytest.param("0696 20 12 34", "+596696201234", id="Martinique 0696"),
        pytest.param("0697 00 12 34", "+596697001234", id="Martinique 0697"),
        pytest.param("0692 12 34 56", "+262692123456", id="La Réunion 0692"),
        pytest.param("0693 00 12 34", "+262693001234", id="La Réunion 0693"),
        pytest.param("0639 01 23 45", "+262639012345", id="Mayotte 0639"),
        pytest.param("06 12 34 56 78", "+33612345678", id="metropolitan 06"),
        pytest.param("07.81.23.45.67", "+33781234567", id="metropolitan 07"),
        pytest.param("06-40-12-34-56", "+33640123456", id="metropolitan 064"),
    ],
)
def test_a_national_mobile_gets_the_country_code_of_its_region(phone: str, e164: str) -> None:
    """Each overseas mobile prefix gets its own country code; 06 and 07 get +33."""
    number = PhoneNumber.parse(phone)
    assert number.e164 == e164
    assert number.mobile is True


@pytest.mark.parametrize(
    ("phone", "e164"),
    [
        ("+590 690 12 34 56", "+590690123456"),
        ("00590 690 12 34 56", "+590690123456"),
        ("+262 (639) 01 23 45", "+262639012345"),
        ("+596696201234", "+596696201234"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+33 (0)6 12 34 56 78", "+33612345678"),
        ("0033 6 12 34 56 78", "+33612345678"),
        ("+508 55 12 34", "+508551234"),
        ("+44 7400 123456", "+447400123456"),
    ],
)
def test_an_international_mobile_keeps_its_country(phone: str, e164: str) -> None:
    """A number written with + or 00 says its country itself, overseas and abroad alike."""
    number = PhoneNumber.parse(phone)
    assert number.e164 == e164
    assert number.mobile is True


@pytest.mark.parametrize(
    "phone",
    [
        pytest.param("01 23 45 67 89", id="Île-de-France landline"),
        pytest.param("05 08 12 34 56", id="south-west landline"),
        pytest.param("09 12 34 56 78", id="internet telephony 09"),
        pytest.param("0800 12 34 56", id="freephone"),
        pytest.param("0590 20 12 34", id="Guadeloupe landline"),
        pytest.param("0594 10 12 34", id="Guyane landline"),
        pytest.param("0596 30 12 34", id="Martinique landline"),
        pytest.param("0262 16 12 34", id="La Réunion landline"),
        pytest.param("0269 60 12 34", id="Mayotte landline"),
        pytest.param("+590 590 20 12 34", id="international landline"),
    ],
)
def test_landlines_cannot_receive_an_sms(phone: str) -> None:
    """A landline, 09 or special number is a phone number, but not a mobile."""
    assert PhoneNumber.parse(phone).mobile is False


@pytest.mark.parametrize(
    "phone",
    [
        pytest.param("", id="empty"),
        pytest.param(" - ", id="no digit"),
        pytest.param("téléphone", id="words"),
        pytest.param("0612FOOBAR", id="letters"),
        pytest.param("06 12 34 56 78 ext 5", id="extension"),
        pytest.param("06 12 34 56", id="too short"),
        pytest.param("06 12 34 56 78 90", id="too long"),
        pytest.param("0" * 33, id="longer than the column"),
        pytest.param("+33 690 12 34 56", id="overseas mobile with +33"),
        pytest.param("07 12 34 56 78", id="unallocated 071"),
        pytest.param("06\u00a012\u00a034\u00a056\u00a078", id="non-ASCII spaces"),
        pytest.param("٠٦١٢٣٤٥٦٧٨", id="non-ASCII digits"),
        pytest.param("++33612345678", id="two plus signs"),
    ],
)
def test_garbage_is_not_a_phone_number(phone: str) -> None:
    """Anything but digits and separators, or no allocated number, is refused."""
    with pytest.raises(InvalidPhoneNumber) as raised:
        PhoneNumber.parse(phone)
    assert phone.strip() == "" or phone not in str(raised.value)


def test_a_phone_number_never_shows_in_a_log_line() -> None:
    """repr and str hide the number, as the NIR's do."""
    number = PhoneNumber.parse("0690 12 34 56")
    for shown in (repr(number), str(number), f"{number}"):
        assert "690" not in shown
        assert "56" not in shown


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("0690 12 34 56", "06******56"),
        ("+590 690 12 34 56", "06******56"),
        ("00590690123456", "06******56"),
        ("+262 639 01 23 45", "06******45"),
        ("+33 (0)6 12 34 56 78", "06******78"),
        ("0033 7 81 23 45 67", "07******67"),
        ("+44 7400 123456", "44********56"),
    ],
)
def test_an_overseas_number_is_masked_in_its_national_form(phone: str, masked: str) -> None:
    """The advisor sees 06******56 for an overseas mobile in any form, as for a metropolitan one."""
    assert mask_phone(phone) == masked
