"""The domain's values: French texts and dates, masks, the NIR, calendar months, codes, keys."""

from __future__ import annotations

import calendar
import re
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from fakes import NIR, nir_key
from hypothesis import given
from hypothesis import strategies as st
from stdnum.exceptions import ValidationError
from stdnum.fr import nir as stdnum_nir

from ameli_grpc.domain.clock import add_calendar_months
from ameli_grpc.domain.errors import AuthError, ErrorReason
from ameli_grpc.domain.locks import governing_lock, lock_error
from ameli_grpc.domain.masking import mask_email, mask_phone
from ameli_grpc.domain.messages import Messages, ceil_to_minute
from ameli_grpc.domain.model import Lock, LockKind
from ameli_grpc.domain.nir import MAX_NIR_INPUT, Nir
from ameli_grpc.domain.policy import QuotaRule
from ameli_grpc.domain.tokens import (
    Keyring,
    constant_time_equal,
    new_provisional_code,
    new_security_code,
    new_token,
)

# --- the texts of SPEC §3 ------------------------------------------------------------------

SPEC_TEXTS = {
    "INVALID_NIR": ("Le numéro de sécurité sociale saisi n'est pas valide. Vérifiez votre saisie."),
    "CODE_NOT_REQUESTED": (
        "Aucun code de sécurité n'a été demandé. Cliquez sur « Recevoir un code de sécurité »."
    ),
    "EMAIL_NOT_VALIDATED": (
        "Désormais, un code de sécurité envoyé par mail est nécessaire pour vous connecter. "
        "Or, vous n'avez pas d'adresse mail renseignée dans votre compte. Validez-la dans "
        "l'application Compte ameli ou contactez votre caisse d'assurance maladie."
    ),
    "NOT_COVERED": (
        "D'après nos informations vous ne dépendez pas du régime général ou de l'un des "
        "régimes partenaires de l'Assurance Maladie. Veuillez consulter les services de votre "
        "régime d'affiliation."
    ),
    "AFFILIATION_PENDING": (
        "Votre rattachement à votre caisse d'assurance maladie est en cours, vous pourrez "
        "bientôt bénéficier de votre compte ameli."
    ),
    "LOGIN_NOT_FOUND": "Votre session de connexion a expiré. Merci de vous reconnecter.",
    "ACCOUNT_NOT_FOUND": "Aucun compte ameli pour ce numéro de sécurité sociale.",
    "SERVICE_UNAVAILABLE": (
        "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."
    ),
    "ACCOUNT_SUSPENDED": (
        "Pour des raisons de sécurité, l'accès à votre compte ameli est suspendu. "
        "Contactez votre caisse d'assurance maladie au 3646."
    ),
    "ATTEMPT_IN_PROGRESS": (
        "Une connexion à votre compte est déjà en cours. Merci de réessayer dans quelques instants."
    ),
}


@pytest.mark.parametrize(("name", "text"), SPEC_TEXTS.items(), ids=SPEC_TEXTS.keys())
def test_fixed_texts_are_the_specs_word_for_word(name: str, text: str) -> None:
    """Each fixed refusal text is SPEC §3's (the guide's where it has one), to the character."""
    assert getattr(Messages, name) == text


def test_the_wrong_entry_text_is_case_4_and_follows_the_limit() -> None:
    """Case 4's text names the configured number of attempts."""
    assert Messages.wrong_entry(3) == (
        "Les informations saisies sont erronées. Merci de vérifier votre saisie. "
        "Attention : 3 essais infructueux bloquent l'accès au service."
    )
    assert "Attention : 5 essais infructueux" in Messages.wrong_entry(5)


def test_the_password_lock_text_is_case_6() -> None:
    """Case 6: the long French date in Paris time, "mercredi 4 janvier 2023 15:47"."""
    assert Messages.password_attempts_locked(datetime(2023, 1, 4, 14, 47, tzinfo=UTC)) == (
        "Pour des raisons de sécurité, l'accès à votre compte ameli est bloqué jusqu'au "
        "mercredi 4 janvier 2023 15:47 (heure de Paris). Si vous n'êtes pas sûr de votre mot de "
        "passe, cliquez sur le lien « Mot de passe oublié ? » ci-dessous."
    )


def test_the_code_lock_text_is_case_5() -> None:
    """Case 5: the short date, "05/01/2023 - 14h45"."""
    assert Messages.code_attempts_locked(datetime(2023, 1, 5, 13, 45, tzinfo=UTC)) == (
        "Les informations saisies sont erronées. L'accès au service est bloqué jusqu'au "
        "05/01/2023 - 14h45 (heure de Paris)."
    )


def test_the_quota_text_is_case_3() -> None:
    """Case 3: the short date, "05/01/2023 - 15h05", and the spam-folder advice."""
    assert Messages.code_quota_exceeded(datetime(2023, 1, 5, 14, 5, tzinfo=UTC)) == (
        "Le nombre maximum de demandes de code a été atteint. L'accès au service est bloqué "
        "jusqu'au 05/01/2023 - 15h05 (heure de Paris). À la fin du blocage, pensez à vérifier "
        "le dossier Spam ou Indésirable de votre boîte mail."
    )


def test_the_client_throttle_text_is_spec_7_6() -> None:
    """CLIENT_THROTTLED: the short date of SPEC §7.6, rounded up to the minute."""
    assert Messages.client_throttled(datetime(2023, 1, 5, 14, 4, 10, tzinfo=UTC)) == (
        "Trop de tentatives de connexion depuis votre appareil. Merci de réessayer après le "
        "05/01/2023 - 15h05 (heure de Paris)."
    )


@pytest.mark.parametrize(
    ("until", "long", "short"),
    [
        (datetime(2023, 1, 4, 14, 46, 1, tzinfo=UTC), "mercredi 4 janvier 2023 15:47", "15h47"),
        (datetime(2023, 1, 4, 14, 46, 0, tzinfo=UTC), "mercredi 4 janvier 2023 15:46", "15h46"),
        (datetime(2023, 1, 4, 14, 45, 0, 1, tzinfo=UTC), "mercredi 4 janvier 2023 15:46", "15h46"),
        (datetime(2023, 7, 5, 13, 4, 30, tzinfo=UTC), "mercredi 5 juillet 2023 15:05", "15h05"),
        (datetime(2023, 1, 4, 22, 59, 30, tzinfo=UTC), "jeudi 5 janvier 2023 00:00", "00h00"),
        (datetime(2023, 3, 26, 0, 59, 59, tzinfo=UTC), "dimanche 26 mars 2023 03:00", "03h00"),
        (datetime(2023, 10, 29, 0, 30, tzinfo=UTC), "dimanche 29 octobre 2023 02:30", "02h30"),
    ],
    ids=[
        "winter, rounded up",
        "on the minute",
        "one microsecond",
        "summer, +2h",
        "past midnight",
        "spring forward",
        "fall back, first 02:30",
    ],
)
def test_lock_times_are_paris_time_rounded_up_to_the_minute(
    until: datetime, long: str, short: str
) -> None:
    """The time shown is Paris local time, never before the lock really ends."""
    assert f"jusqu'au {long} (heure de Paris)" in Messages.password_attempts_locked(until)
    assert f" - {short} (heure de Paris)" in Messages.code_attempts_locked(until)
    assert f" - {short} (heure de Paris)" in Messages.code_quota_exceeded(until)


@given(st.datetimes(timezones=st.just(UTC)))
def test_rounding_up_never_shows_a_time_before_the_end(moment: datetime) -> None:
    """The rounded time is on a whole minute, at or after the moment, less than a minute later."""
    rounded = ceil_to_minute(moment)

    assert (rounded.second, rounded.microsecond) == (0, 0)
    assert moment <= rounded < moment + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("ttl", "text"),
    [
        (timedelta(minutes=15), "dans les 15 minutes."),
        (timedelta(minutes=10), "dans les 10 minutes."),
        (timedelta(minutes=1), "dans les 1 minute."),
        (timedelta(seconds=90), "dans les 2 minutes."),
    ],
)
def test_the_expired_code_text_follows_the_code_lifetime(ttl: timedelta, text: str) -> None:
    """Case 2 says "15 minutes" by default and whatever the configured lifetime is otherwise."""
    message = Messages.code_expired(ttl)

    assert (
        message == f"Le code de sécurité n'a pas été saisi {text} Merci d'en demander un nouveau."
    )


# --- masks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        ("toto@test.com", "t***@t***.com"),
        ("jean.dupont@assurance-maladie.fr", "j***@a***.fr"),
        ("x@mail.example.co.uk", "x***@m***.uk"),
        ("  toto@test.com ", "t***@t***.com"),
        ("a@localhost", "a***@l***"),
    ],
)
def test_mask_email_keeps_only_the_first_letters_and_the_last_label(
    email: str, masked: str
) -> None:
    """An address shows as in step 1 of the guide: t***@t***.com."""
    assert mask_email(email) == masked


_LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@given(local=_LABEL, labels=st.lists(_LABEL, min_size=2, max_size=4))
def test_mask_email_never_shows_more_than_the_guide(local: str, labels: list[str]) -> None:
    """Whatever the address, only its two first characters and its top-level label show."""
    assert (
        mask_email(f"{local}@{'.'.join(labels)}") == f"{local[0]}***@{labels[0][0]}***.{labels[-1]}"
    )


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("06 12 34 56 78", "06******78"),
        ("0612345678", "06******78"),
        ("06.12.34.56.78", "06******78"),
        ("07-98-76-54-32", "07******32"),
        ("1234", "****"),
    ],
)
def test_mask_phone_keeps_the_first_two_and_last_two_digits(phone: str, masked: str) -> None:
    """A mobile number shows as 06******78."""
    assert mask_phone(phone) == masked


# --- the NIR ---------------------------------------------------------------------------------

_DIGIT = st.sampled_from("0123456789")
_BODIES = st.builds(
    lambda head, department, tail: head + department + tail,
    st.text(_DIGIT, min_size=5, max_size=5),
    st.text(_DIGIT, min_size=2, max_size=2) | st.sampled_from(["2A", "2B"]),
    st.text(_DIGIT, min_size=6, max_size=6),
)


@given(_BODIES)
def test_any_valid_nir_round_trips_with_and_without_its_key(body: str) -> None:
    """Every well-formed 13-character body, alone or with its key, parses to itself."""
    assert Nir.parse(body).value == body
    assert Nir.parse(body + nir_key(body)).value == body
    assert Nir.parse(body.lower()).value == body


@given(_BODIES, st.data())
def test_spaces_anywhere_are_ignored(body: str, data: st.DataObject) -> None:
    """Spaces typed inside a NIR change nothing."""
    full = body + nir_key(body)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(full)), max_size=6)))
    spaced = "".join(
        full[start:end] + " " for start, end in zip([0, *cuts], [*cuts, len(full)], strict=True)
    )

    assert Nir.parse(spaced).value == body


@given(_BODIES, st.integers(0, 99))
def test_a_wrong_key_is_rejected(body: str, key: int) -> None:
    """Fifteen characters whose last two are not the body's key are INVALID_NIR."""
    if f"{key:02d}" == nir_key(body):
        key = (key + 1) % 100

    with pytest.raises(AuthError) as caught:
        Nir.parse(f"{body}{key:02d}")

    assert caught.value.reason is ErrorReason.INVALID_NIR


@given(st.text(max_size=80))
def test_any_text_is_a_nir_or_invalid_nir_never_a_crash(raw: str) -> None:
    """Whatever is typed, parsing gives a 13-character NIR or INVALID_NIR, nothing else."""
    outcome: Nir | ErrorReason
    try:
        outcome = Nir.parse(raw)
    except AuthError as error:
        outcome = error.reason

    if isinstance(outcome, Nir):
        assert len(outcome.value) == 13
        assert outcome.value.isascii()
    else:
        assert outcome is ErrorReason.INVALID_NIR


def _valid_for_stdnum(raw: str) -> str | None:
    """The reference: python-stdnum's ``validate`` on the typed text without its spaces (a
    13-character body given its key first), as ``Nir.parse`` once did it in full."""
    compact = "".join(raw.split()).upper() if len(raw) <= MAX_NIR_INPUT else ""
    if not compact.isascii():
        return None
    try:
        if len(compact) == 13:
            compact += stdnum_nir.calc_check_digits(compact)
        return str(stdnum_nir.validate(compact))[:13]
    except (ValidationError, ValueError):
        return None


@st.composite
def _dotted(draw: st.DrawFn) -> str:
    """A valid NIR with its key, dots typed anywhere in it."""
    body = draw(_BODIES)
    full = body + nir_key(body)
    cuts = sorted(draw(st.lists(st.integers(0, len(full)), max_size=4)))
    return ".".join(full[a:b] for a, b in zip([0, *cuts], [*cuts, len(full)], strict=True))


_TYPED = st.text("0123456789AaBb2.+-_ \u00a0", min_size=11, max_size=22) | _dotted()


@given(_TYPED | st.text(max_size=24))
def test_the_nir_is_parsed_as_python_stdnum_validates_it(raw: str) -> None:
    """The form is checked without stdnum for speed; what is accepted, and as what, is
    exactly what stdnum's validation accepts (dots included)."""
    try:
        parsed: str | None = Nir.parse(raw).value
    except AuthError:
        parsed = None
    assert parsed == _valid_for_stdnum(raw)


def test_a_nir_never_prints_itself() -> None:
    """repr and str of a NIR hide it, so that it cannot end up in a log line by accident."""
    nir = Nir.parse(NIR)

    assert NIR not in repr(nir)
    assert NIR not in str(nir)
    assert NIR not in f"{nir}"


# --- calendar months ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (datetime(2023, 8, 31, 10, 15, tzinfo=UTC), 6, datetime(2024, 2, 29, 10, 15, tzinfo=UTC)),
        (datetime(2022, 8, 31, 10, 15, tzinfo=UTC), 6, datetime(2023, 2, 28, 10, 15, tzinfo=UTC)),
        (datetime(2023, 3, 31, tzinfo=UTC), 1, datetime(2023, 4, 30, tzinfo=UTC)),
        (datetime(2023, 11, 15, tzinfo=UTC), 6, datetime(2024, 5, 15, tzinfo=UTC)),
        (datetime(2023, 12, 31, tzinfo=UTC), 6, datetime(2024, 6, 30, tzinfo=UTC)),
        (
            datetime(2023, 5, 17, 8, 0, 1, 5, tzinfo=UTC),
            0,
            datetime(2023, 5, 17, 8, 0, 1, 5, tzinfo=UTC),
        ),
        (datetime(2023, 1, 31, tzinfo=UTC), 25, datetime(2025, 2, 28, tzinfo=UTC)),
    ],
)
def test_add_calendar_months(start: datetime, months: int, end: datetime) -> None:
    """Whole calendar months, the day clamped to the month's end: 31 August + 6 is end February."""
    assert add_calendar_months(start, months) == end


@given(st.datetimes(timezones=st.just(UTC), max_value=datetime(9000, 1, 1)), st.integers(0, 240))
def test_add_calendar_months_moves_the_month_and_keeps_the_time(
    moment: datetime, months: int
) -> None:
    """The result is ``months`` months on, same time of day, on the same day or the month's last."""
    result = add_calendar_months(moment, months)

    assert result.year * 12 + result.month == moment.year * 12 + moment.month + months
    assert result.day == min(moment.day, calendar.monthrange(result.year, result.month)[1])
    assert (result.time(), result.tzinfo) == (moment.time(), moment.tzinfo)


# --- codes, tokens and keys --------------------------------------------------------------------


def test_security_codes_are_six_ascii_digits() -> None:
    """Every security code is exactly six ASCII digits."""
    codes = {new_security_code() for _ in range(2000)}

    assert all(re.fullmatch(r"[0-9]{6}", code) for code in codes)
    assert len(codes) > 1900  # random, not a counter or a constant


def test_security_codes_keep_their_leading_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small draw is written with its leading zeros, from the whole million of codes."""
    bounds: list[int] = []

    def draw(bound: int) -> int:
        bounds.append(bound)
        return 42

    monkeypatch.setattr(secrets, "randbelow", draw)  # what tokens draws its codes from

    assert new_security_code() == "000042"
    assert bounds == [1_000_000]


def test_provisional_codes_avoid_ambiguous_characters() -> None:
    """A provisional code read from an SMS has ten characters and no 0/O or 1/I."""
    for _ in range(200):
        code = new_provisional_code()
        assert len(code) == 10
        assert not set(code) & set("01OI")
        assert code.isalnum()
        assert code.isascii()


def test_tokens_are_256_random_bits_url_safe() -> None:
    """Device and setup tokens are long, URL-safe and never repeat."""
    made = {new_token() for _ in range(500)}

    assert len(made) == 500
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43,}", token) for token in made)


def test_constant_time_equal_compares_the_whole_text() -> None:
    """Equal texts match; a different or shorter one does not."""
    assert constant_time_equal("123456", "123456")
    assert not constant_time_equal("123456", "123457")
    assert not constant_time_equal("123456", "12345")


def test_keyring_digests_differ_per_label() -> None:
    """The same input under two labels gives unrelated digests."""
    keyring = Keyring(b"k" * 32)

    digests = {
        keyring.nir_ref("x")[:32],
        keyring.token_hash("x")[:32],
        keyring.code_digest("x", "")[:32],
        keyring.code_digest("", "x")[:32],
    }

    assert len(digests) == 4


def test_keyring_digests_differ_per_key_and_are_stable() -> None:
    """Another key gives other digests; the same key always the same."""
    one, same, other = Keyring(b"k" * 32), Keyring(b"k" * 32), Keyring(b"j" * 32)

    assert one.nir_ref(NIR) == same.nir_ref(NIR)
    assert one.nir_ref(NIR) != other.nir_ref(NIR)
    assert one.token_hash("t") != other.token_hash("t")
    assert one.code_digest("login", "123456") != other.code_digest("login", "123456")


def test_a_code_digest_is_bound_to_its_login() -> None:
    """The same code for two logins gives two digests, so a code cannot serve another login."""
    keyring = Keyring(b"k" * 32)

    assert keyring.code_digest("login-1", "123456") != keyring.code_digest("login-2", "123456")
    assert NIR not in keyring.nir_ref(NIR)
    assert len(keyring.nir_ref(NIR)) == 32


def test_the_keyring_refuses_a_short_key() -> None:
    """A secret key under 32 bytes is refused at start."""
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring(b"k" * 31)


# --- lock precedence ---------------------------------------------------------------------------

_T = datetime(2023, 1, 4, 14, 47, tzinfo=UTC)


def test_the_lock_ending_last_governs() -> None:
    """Of several locks, the one that ends last is the one shown."""
    early = Lock(LockKind.CODE_QUOTA, _T)
    late = Lock(LockKind.PASSWORD_ATTEMPTS, _T + timedelta(seconds=1))

    assert governing_lock([early, late]) == late
    assert governing_lock([late, early]) == late
    assert governing_lock([]) is None


def test_on_equal_ends_the_quota_then_codes_then_passwords_govern() -> None:
    """On equal end times the more specific cause is shown: quota, then code, then password."""
    password = Lock(LockKind.PASSWORD_ATTEMPTS, _T)
    code = Lock(LockKind.CODE_ATTEMPTS, _T)
    quota = Lock(LockKind.CODE_QUOTA, _T)

    assert governing_lock([password, code, quota]) == quota
    assert governing_lock([quota, code, password]) == quota
    assert governing_lock([password, code]) == code


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (LockKind.PASSWORD_ATTEMPTS, ErrorReason.PASSWORD_ATTEMPTS_LOCKED),
        (LockKind.CODE_ATTEMPTS, ErrorReason.CODE_ATTEMPTS_LOCKED),
        (LockKind.CODE_QUOTA, ErrorReason.CODE_QUOTA_EXCEEDED),
    ],
)
def test_each_lock_has_its_own_error(kind: LockKind, reason: ErrorReason) -> None:
    """A lock refuses with its own reason, its end, and the quota only for the quota lock."""
    error = lock_error(Lock(kind, _T), QuotaRule(5, timedelta(hours=1), timedelta(hours=1)))

    assert error.reason is reason
    assert error.lock_expire_time == _T
    expected = "5 codes de sécurité au plus par période glissante de 60 minutes"
    assert error.quota_violation == (expected if kind is LockKind.CODE_QUOTA else None)
    assert error.attempts_remaining is None
