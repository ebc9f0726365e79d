"""Every French text the insured person or the advisor sees, side by side with the guide.

Times are Europe/Paris local time with French names (Babel/CLDR), rounded
**up** to the minute so that the time shown is never before the lock ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

PARIS = ZoneInfo("Europe/Paris")
_LONG_DATE = "EEEE d MMMM y HH:mm"  # "mercredi 4 janvier 2023 15:47" (case 6)
_SHORT_DATE = "dd/MM/yyyy - HH'h'mm"  # "05/01/2023 - 15h05" (cases 3 and 5)


def ceil_to_minute(moment: datetime) -> datetime:
    floored = moment.replace(second=0, microsecond=0)
    return floored if floored == moment else floored + timedelta(minutes=1)


def paris_time(moment: datetime, pattern: str) -> str:
    return format_datetime(ceil_to_minute(moment), pattern, tzinfo=PARIS, locale="fr_FR")


def whole_minutes(duration: timedelta) -> int:
    """Whole minutes, rounded up (at least one): what a text may promise."""
    return max(1, -(-int(duration.total_seconds()) // 60))


def minutes(duration: timedelta) -> str:
    """A duration as the guide writes it: "15 minutes"."""
    count = whole_minutes(duration)
    return f"{count} minute{'s' if count > 1 else ''}"


class Messages:
    """The texts of SPEC §3; the ones with a placeholder are methods."""

    INVALID_NIR = "Le numéro de sécurité sociale saisi n'est pas valide. Vérifiez votre saisie."
    CODE_NOT_REQUESTED = (
        "Aucun code de sécurité n'a été demandé. Cliquez sur « Recevoir un code de sécurité »."
    )
    EMAIL_NOT_VALIDATED = (
        "Désormais, un code de sécurité envoyé par mail est nécessaire pour vous connecter. "
        "Or, vous n'avez pas d'adresse mail renseignée dans votre compte. "
        "Validez-la dans l'application Compte ameli ou contactez votre caisse d'assurance maladie."
    )
    NOT_COVERED = (
        "D'après nos informations vous ne dépendez pas du régime général ou de l'un des "
        "régimes partenaires de l'Assurance Maladie. "
        "Veuillez consulter les services de votre régime d'affiliation."
    )
    AFFILIATION_PENDING = (
        "Votre rattachement à votre caisse d'assurance maladie est en cours, "
        "vous pourrez bientôt bénéficier de votre compte ameli."
    )
    LOGIN_NOT_FOUND = "Votre session de connexion a expiré. Merci de vous reconnecter."
    ACCOUNT_NOT_FOUND = "Aucun compte ameli pour ce numéro de sécurité sociale."
    CALLER_NOT_ALLOWED = "L'application appelante n'est pas autorisée à utiliser ce service."
    SERVICE_UNAVAILABLE = (
        "Le service est momentanément indisponible. Merci de réessayer dans quelques instants."
    )
    INVALID_REQUEST = "La demande est incomplète ou invalide."
    ACCOUNT_SUSPENDED = (
        "Pour des raisons de sécurité, l'accès à votre compte ameli est suspendu. "
        "Contactez votre caisse d'assurance maladie au 3646."
    )
    ATTEMPT_IN_PROGRESS = (
        "Une connexion à votre compte est déjà en cours. Merci de réessayer dans quelques instants."
    )
    INTERNAL = "Une erreur technique est survenue. Merci de réessayer dans quelques instants."

    NIR_FORMAT = "13 caractères, ou 15 avec la clé"
    CLIENT_IP_FORMAT = "adresse IPv4 ou IPv6 de la personne, ou vide"
    REQUIRED_FIELD = "champ obligatoire"

    @staticmethod
    def text_field(max_length: int, *, required: bool, printable: bool) -> str:
        """BadRequest description of a text field's rule."""
        limit = (
            f"{max_length} caractères imprimables au plus"
            if printable
            else f"{max_length} caractères au plus, sans caractère de contrôle"
        )
        return f"champ obligatoire, {limit}" if required else limit

    @staticmethod
    def one_of(names: list[str]) -> str:
        """BadRequest description of an enum field: the values it may hold."""
        return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} ou {names[-1]}"

    @staticmethod
    def quota_rule(limit: int, window: timedelta) -> str:
        """QuotaFailure description of the code quota."""
        return f"{limit} codes de sécurité au plus par période glissante de {minutes(window)}"

    @staticmethod
    def wrong_entry(max_failures: int) -> str:
        """Case 4, for a wrong password or a wrong code."""
        return (
            "Les informations saisies sont erronées. Merci de vérifier votre saisie. "
            f"Attention : {max_failures} essais infructueux bloquent l'accès au service."
        )

    @staticmethod
    def password_attempts_locked(until: datetime) -> str:
        """Case 6."""
        return (
            "Pour des raisons de sécurité, l'accès à votre compte ameli est bloqué jusqu'au "
            f"{paris_time(until, _LONG_DATE)} (heure de Paris). "
            "Si vous n'êtes pas sûr de votre mot de passe, cliquez sur le lien "
            "« Mot de passe oublié ? » ci-dessous."
        )

    @staticmethod
    def code_attempts_locked(until: datetime) -> str:
        """Case 5."""
        return (
            "Les informations saisies sont erronées. L'accès au service est bloqué jusqu'au "
            f"{paris_time(until, _SHORT_DATE)} (heure de Paris)."
        )

    @staticmethod
    def code_quota_exceeded(until: datetime) -> str:
        """Case 3."""
        return (
            "Le nombre maximum de demandes de code a été atteint. "
            f"L'accès au service est bloqué jusqu'au {paris_time(until, _SHORT_DATE)} "
            "(heure de Paris). À la fin du blocage, pensez à vérifier le dossier Spam ou "
            "Indésirable de votre boîte mail."
        )

    @staticmethod
    def client_throttled(until: datetime) -> str:
        """SPEC §7.6: too many wrong entries from one client address."""
        return (
            "Trop de tentatives de connexion depuis votre appareil. Merci de réessayer après le "
            f"{paris_time(until, _SHORT_DATE)} (heure de Paris)."
        )

    @staticmethod
    def code_expired(code_ttl: timedelta) -> str:
        """Case 2."""
        return (
            f"Le code de sécurité n'a pas été saisi dans les {minutes(code_ttl)}. "
            "Merci d'en demander un nouveau."
        )


# --- the security-code email (guide, step 2) --------------------------------------------

SUBJECT = "Votre code de sécurité pour votre compte ameli"
BANNER = "MON COMPTE AMELI"
GREETING = "Bonjour,"
INTRO = "Nous vous adressons votre code de sécurité pour vous connecter à votre compte ameli :"
# "{duration}" is bold in the guide; the HTML part keeps it that way.
VALIDITY = (
    "Attention ! Ce code est valable seulement {duration}. "
    "Au-delà de ce délai, vous devrez demander un nouveau code."
)
PERSONAL = "Ce code est strictement personnel et ne doit jamais être communiqué."
NO_PHONE = "Nous ne demandons jamais de code par téléphone."
NOT_YOU = (
    "Si vous n'êtes pas à l'origine de cette demande, contactez votre caisse d'assurance "
    "maladie qui vous donnera les consignes à suivre. "
    "Sachez néanmoins que votre compte ameli reste sécurisé."
)
AUTOMATED = (
    "Ce message est généré par un automate. Ne pas utiliser la fonctionnalité « répondre à »."
)
THANKS = "Merci de votre confiance."
SIGNATURE = "Votre caisse d'assurance maladie"
APP_FOOTER = (
    "Besoin d'accéder à vos remboursements où que vous soyez ?",
    "Téléchargez gratuitement l'appli ameli depuis l'App Store ou Google Play",
)


# --- the advisor's SMS (FAQ) -----------------------------------------------------------

# One SMS is 160 GSM-7 characters (é and à are in that alphabet): keep the text within it.
PROVISIONAL_CODE_SMS = (
    "Assurance Maladie : votre code provisoire pour créer votre compte ameli est {code}. "
    "Valable {duration}, une seule fois. Ne le communiquez à personne."
)


def provisional_code_sms(code: str, valid_for: timedelta) -> str:
    """The SMS of the advisor reset: the provisional code and how long it lasts."""
    return PROVISIONAL_CODE_SMS.format(code=code, duration=minutes(valid_for))
