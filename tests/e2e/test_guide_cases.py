"""The eight error cases of the guide, each with its exact message (SPEC §3)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import grpc
from ameli.auth.v1 import auth_pb2
from babel.dates import format_datetime
from google.rpc import error_details_pb2

from ameli_grpc.domain.model import Affiliation
from tests.e2e.harness import ServiceUnderTest, nir, refused
from tests.support.mail import extract_code, text_part

WRONG_ENTRY = (
    "Les informations saisies sont erronées. Merci de vérifier votre saisie. "
    "Attention : 3 essais infructueux bloquent l'accès au service."
)
PARIS = ZoneInfo("Europe/Paris")
SHORT = "dd/MM/yyyy - HH'h'mm"
LONG = "EEEE d MMMM y HH:mm"


def lock_time(refusal_metadata: dict[str, str]) -> datetime:
    return datetime.fromisoformat(refusal_metadata["lockExpireTime"].replace("Z", "+00:00"))


def shown(moment: datetime, pattern: str) -> str:
    """The time as the message shows it: Paris time, rounded up to the minute."""
    rounded = moment.replace(second=0, microsecond=0)
    if rounded != moment:
        rounded = rounded.fromtimestamp(rounded.timestamp() + 60, UTC)
    return format_datetime(rounded, pattern, tzinfo=PARIS, locale="fr_FR")


async def test_case_1_no_validated_email(service: ServiceUnderTest) -> None:
    """Case 1: an account without a validated email cannot receive a code."""
    await service.add_account(nir(11), email_validated=False)
    refusal = await refused(service.login(nir(11)))
    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refusal.reason == "EMAIL_NOT_VALIDATED"
    assert refusal.message == (
        "Désormais, un code de sécurité envoyé par mail est nécessaire pour vous connecter. "
        "Or, vous n'avez pas d'adresse mail renseignée dans votre compte. Validez-la dans "
        "l'application Compte ameli ou contactez votre caisse d'assurance maladie."
    )


async def test_case_2_code_expired(service: ServiceUnderTest) -> None:
    """Case 2: a code not entered within 15 minutes is refused, without counting as a failure."""
    await service.add_account(nir(12))
    login_id = (await service.login(nir(12))).code_required.login_id
    code = await service.request_code(login_id)
    service.clock.advance(minutes=15)
    refusal = await refused(
        service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=code))
    )
    assert refusal.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refusal.reason == "CODE_EXPIRED"
    assert refusal.message == (
        "Le code de sécurité n'a pas été saisi dans les 15 minutes. Merci d'en demander un nouveau."
    )
    status = await service.portal.GetLockStatus(auth_pb2.GetLockStatusRequest(nir=nir(12)))
    assert status.code_failures == 0
    fresh = await service.request_code(login_id)
    await service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=fresh))


async def test_case_2_default_code_lifetime_is_fifteen_minutes(service: ServiceUnderTest) -> None:
    """By default a code is valid 15 minutes, and its email says so."""
    await service.add_account(nir(13))
    login_id = (await service.login(nir(13))).code_required.login_id
    sent = await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    lifetime = sent.code_expire_time.ToDatetime(UTC) - datetime.now(UTC)
    assert 890 <= lifetime.total_seconds() <= 900
    message = (await service.smtp.wait_for_messages(1))[0]
    assert "Ce code est valable seulement 15 minutes." in text_part(message)


async def test_case_3_quota_of_codes(service: ServiceUnderTest) -> None:
    """Case 3: five codes per sliding hour; the sixth request locks the NIR for one hour."""
    await service.add_account(nir(14))
    login_id = (await service.login(nir(14))).code_required.login_id
    remaining = []
    for _ in range(5):
        sent = await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
        remaining.append(sent.codes_remaining)
    assert remaining == [4, 3, 2, 1, 0]
    refusal = await refused(
        service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    )
    assert refusal.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refusal.reason == "CODE_QUOTA_EXCEEDED"
    until = lock_time(refusal.metadata)
    assert 3590 <= (until - datetime.now(UTC)).total_seconds() <= 3601  # rounded up to 1 s
    assert refusal.message == (
        "Le nombre maximum de demandes de code a été atteint. L'accès au service est bloqué "
        f"jusqu'au {shown(until, SHORT)} (heure de Paris). À la fin du "
        "blocage, pensez à vérifier le dossier Spam ou Indésirable de votre boîte mail."
    )
    assert refusal.detail(error_details_pb2.RetryInfo).retry_delay.seconds > 3500
    assert refusal.detail(error_details_pb2.QuotaFailure).violations
    assert len(service.smtp.deliveries) == 5
    blocked = await refused(service.login(nir(14)))
    assert blocked.reason == "CODE_QUOTA_EXCEEDED"


async def test_case_4_wrong_password_and_wrong_code(service: ServiceUnderTest) -> None:
    """Case 4: a wrong password or code is refused with the attempts left."""
    await service.add_account(nir(15))
    refusal = await refused(service.login(nir(15), password="faux"))
    assert refusal.code == grpc.StatusCode.UNAUTHENTICATED
    assert refusal.reason == "INVALID_CREDENTIALS"
    assert refusal.message == WRONG_ENTRY
    assert refusal.metadata["attemptsRemaining"] == "2"

    login_id = (await service.login(nir(15))).code_required.login_id
    code = await service.request_code(login_id)
    wrong = "000000" if code != "000000" else "111111"
    refusal = await refused(
        service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=wrong))
    )
    assert refusal.reason == "INVALID_CODE"
    assert refusal.message == WRONG_ENTRY
    assert refusal.metadata["attemptsRemaining"] == "2"


async def test_case_5_three_wrong_codes(service: ServiceUnderTest) -> None:
    """Case 5: the third wrong code locks the NIR for fifteen minutes."""
    await service.add_account(nir(16))
    login_id = (await service.login(nir(16))).code_required.login_id
    code = await service.request_code(login_id)
    wrong = "000000" if code != "000000" else "111111"
    verify = auth_pb2.VerifyCodeRequest(login_id=login_id, code=wrong)
    first, second = (
        await refused(service.portal.VerifyCode(verify)),
        await refused(service.portal.VerifyCode(verify)),
    )
    assert [first.metadata["attemptsRemaining"], second.metadata["attemptsRemaining"]] == ["2", "1"]
    third = await refused(service.portal.VerifyCode(verify))
    assert third.code == grpc.StatusCode.FAILED_PRECONDITION
    assert third.reason == "CODE_ATTEMPTS_LOCKED"
    until = lock_time(third.metadata)
    assert 890 <= (until - datetime.now(UTC)).total_seconds() <= 901  # rounded up to 1 s
    assert third.message == (
        "Les informations saisies sont erronées. L'accès au service est bloqué jusqu'au "
        f"{shown(until, SHORT)} (heure de Paris)."
    )
    right = await refused(
        service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code=code))
    )
    assert right.reason == "CODE_ATTEMPTS_LOCKED"
    assert (await refused(service.login(nir(16)))).reason == "CODE_ATTEMPTS_LOCKED"


async def test_case_6_three_wrong_passwords(service: ServiceUnderTest) -> None:
    """Case 6: the third wrong password locks the NIR; even the right one is then refused."""
    await service.add_account(nir(17))
    for remaining in ("2", "1"):
        refusal = await refused(service.login(nir(17), password="faux"))
        assert refusal.metadata["attemptsRemaining"] == remaining
    third = await refused(service.login(nir(17), password="faux"))
    assert third.code == grpc.StatusCode.FAILED_PRECONDITION
    assert third.reason == "PASSWORD_ATTEMPTS_LOCKED"
    until = lock_time(third.metadata)
    assert third.message == (
        "Pour des raisons de sécurité, l'accès à votre compte ameli est bloqué jusqu'au "
        f"{shown(until, LONG)} (heure de Paris). Si vous n'êtes pas sûr de "
        "votre mot de passe, cliquez sur le lien « Mot de passe oublié ? » ci-dessous."
    )
    assert third.detail(error_details_pb2.RetryInfo).retry_delay.seconds >= 899
    assert (await refused(service.login(nir(17)))).reason == "PASSWORD_ATTEMPTS_LOCKED"


async def test_case_7_not_covered(service: ServiceUnderTest) -> None:
    """Case 7: a person outside the Régime Général and partner schemes cannot log in."""
    await service.add_account(nir(18), affiliation=Affiliation.NOT_COVERED)
    refusal = await refused(service.login(nir(18)))
    assert refusal.reason == "NOT_COVERED"
    assert refusal.message == (
        "D'après nos informations vous ne dépendez pas du régime général ou de l'un des "
        "régimes partenaires de l'Assurance Maladie. Veuillez consulter les services de "
        "votre régime d'affiliation."
    )
    wrong = await refused(service.login(nir(18), password="faux"))
    assert wrong.reason == "INVALID_CREDENTIALS"  # told only after the password is right


async def test_case_8_affiliation_pending(service: ServiceUnderTest) -> None:
    """Case 8: an affiliation in progress is told so, after the password was verified."""
    await service.add_account(nir(19), affiliation=Affiliation.PENDING)
    refusal = await refused(service.login(nir(19)))
    assert refusal.reason == "AFFILIATION_PENDING"
    assert refusal.message == (
        "Votre rattachement à votre caisse d'assurance maladie est en cours, vous pourrez "
        "bientôt bénéficier de votre compte ameli."
    )


async def test_code_not_requested(service: ServiceUnderTest) -> None:
    """VerifyCode before any RequestCode says no code was requested."""
    await service.add_account(nir(20))
    login_id = (await service.login(nir(20))).code_required.login_id
    refusal = await refused(
        service.portal.VerifyCode(auth_pb2.VerifyCodeRequest(login_id=login_id, code="123456"))
    )
    assert refusal.reason == "CODE_NOT_REQUESTED"
    assert refusal.message == (
        "Aucun code de sécurité n'a été demandé. Cliquez sur « Recevoir un code de sécurité »."
    )


async def test_the_code_email_reads_as_in_the_guide(service: ServiceUnderTest) -> None:
    """The email of step 2: the code as six spaced digits and the guide's paragraphs."""
    await service.add_account(nir(21))
    login_id = (await service.login(nir(21))).code_required.login_id
    await service.portal.RequestCode(auth_pb2.RequestCodeRequest(login_id=login_id))
    message = (await service.smtp.wait_for_messages(1))[0]
    assert len(extract_code(message)) == 6
    assert message.get_content_type() == "multipart/alternative"
