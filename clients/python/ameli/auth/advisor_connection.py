"""How ``ameli-advisor`` reaches the service, and, when it cannot, why — naming the target.

gRPC reports every transport failure as ``UNAVAILABLE`` (or ``DEADLINE_EXCEEDED``)
without a rich status; only the status details, written by gRPC's C-core, tell
a name that does not resolve from a port where nothing listens or a refused
certificate. They are not a stable interface, so each kind is matched on the
wordings of the current and older C-cores, and anything else still gets a
sentence naming the target, with gRPC's own words in parentheses. The tests of
the command line produce each kind for real.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import grpc

from ameli.auth import client as auth

__all__ = ["Endpoint", "Failure", "FailureKind", "TlsFilesError", "transport_failure"]


class TlsFilesError(Exception):
    """A CA, certificate or key file that cannot be used (French message, before any call)."""


class FailureKind(StrEnum):
    """Why the service could not be reached (the ``failure`` key of ``--json`` errors)."""

    DNS = "dns"
    REFUSED = "connection_refused"
    TLS = "tls"
    CLOSED = "connection_closed"
    DEADLINE = "deadline_exceeded"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str


@dataclass(frozen=True)
class Endpoint:
    """Where the service is and how to talk to it (from the command line options)."""

    target: str
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def secure(self) -> bool:
        """TLS with ``--tls``, or implied by any of the certificate files."""
        return self.tls or any((self.ca_file, self.cert_file, self.key_file))

    @property
    def host(self) -> str:
        """The host part of ``HOST:PORT`` (brackets of an IPv6 address removed)."""
        target = self.target.removeprefix("dns:///").removeprefix("dns:")
        host = target.rsplit(":", 1)[0] if target.count(":") == 1 else target
        if target.startswith("[") and "]" in target:
            host = target[1 : target.index("]")]
        return host

    def credentials(self) -> grpc.ChannelCredentials:
        """TLS credentials from the files, checked here so that a bad file is not a network error.

        Raises ``TlsFilesError`` (French) for a missing or unreadable file, a CA file
        without a certificate, or a certificate and key that do not match.
        """
        if (self.cert_file is None) != (self.key_file is None):
            raise TlsFilesError("--cert-file et --key-file vont ensemble : indiquez les deux.")
        roots = _read(self.ca_file, "--ca-file")
        if self.ca_file is not None:
            try:
                ssl.create_default_context(cafile=str(self.ca_file))
            except (ssl.SSLError, ValueError) as error:
                message = f"--ca-file {self.ca_file} : aucun certificat PEM utilisable ({error})."
                raise TlsFilesError(message) from error
        chain, key = _read(self.cert_file, "--cert-file"), _read(self.key_file, "--key-file")
        if self.cert_file is not None and self.key_file is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                    self.cert_file, self.key_file
                )
            except (ssl.SSLError, ValueError) as error:
                message = (
                    f"--cert-file {self.cert_file} et --key-file {self.key_file} : "
                    f"certificat ou clé PEM illisible, ou qui ne vont pas ensemble ({error})."
                )
                raise TlsFilesError(message) from error
        return grpc.ssl_channel_credentials(roots, key, chain)

    def channel(self, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
        """A channel to the target: TLS with ``credentials()``'s result, else plaintext."""
        if credentials is not None:
            return grpc.aio.secure_channel(self.target, credentials)
        return grpc.aio.insecure_channel(self.target)


def _read(path: Path | None, option: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise TlsFilesError(f"{option} {path} : fichier illisible ({reason}).") from error


# Lower-cased fragments of the C-core's status details, per kind (current and older wordings).
_DNS = ("errors resolving", "dns resolution failed", "hostname lookup", "domain name not found")
_REFUSED = ("connection refused",)
_TLS_CONFIG = ("security handshaker", "handshaker factory")
_TLS_PLAINTEXT_PEER = ("wrong_version_number", "http_request", "packet_length_too_long")
_TLS_UNTRUSTED = ("certificate_verify_failed", "certificate verify failed", "unknown ca")
_TLS_NAME = ("hostname verification", "peer name", "does not match")
_TLS = ("handshake failed", "ssl_error", "tsi_", "ssl routines", "tls")
_CLOSED = ("socket closed", "connection reset", "end of tcp stream", "broken pipe")


def transport_failure(
    error: auth.AuthServiceError, endpoint: Endpoint, timeout: float
) -> Failure | None:
    """What went wrong on the way to the service; None if the service itself answered.

    The service's own refusals carry an ``ErrorInfo`` reason (``SERVICE_UNAVAILABLE``
    when one of its dependencies is down): those are its message to show, not ours.
    """
    if error.reason or error.code not in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ):
        return None
    target = endpoint.target
    if error.code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return Failure(
            FailureKind.DEADLINE,
            f"Pas de réponse du service {target} dans le délai de {timeout:g} s (--timeout) : "
            "service surchargé ou bloqué, ou adresse qui n'est pas celle du service.",
        )
    cause = error.__cause__
    details = cause.details() if isinstance(cause, grpc.aio.AioRpcError) else None
    text = (details or "").lower()
    if _has(text, _DNS):
        return Failure(
            FailureKind.DNS,
            f"Nom inconnu : « {endpoint.host} » ne se résout pas (DNS), le service {target} "
            "est introuvable. Vérifiez --target.",
        )
    if _has(text, _REFUSED):
        return Failure(
            FailureKind.REFUSED,
            f"Connexion refusée par {target} : aucun service n'écoute à cette adresse. "
            "Vérifiez --target et que le service est démarré.",
        )
    if tls := _tls_failure(details or "", endpoint):
        return Failure(FailureKind.TLS, tls)
    if _has(text, _CLOSED):
        hint = (
            "certificat client absent ou refusé (--cert-file, --key-file) ?"
            if endpoint.secure
            else "le service attend-il TLS (--tls, --ca-file) ?"
        )
        return Failure(FailureKind.CLOSED, f"Le service {target} a fermé la connexion : {hint}")
    return Failure(
        FailureKind.UNREACHABLE,
        f"Le service {target} est injoignable ({details or error.code.name}).",
    )


def _tls_failure(details: str, endpoint: Endpoint) -> str | None:
    target, text = endpoint.target, details.lower()
    if _has(text, _TLS_CONFIG):
        return (
            f"Échec TLS avec {target} : la configuration TLS de ce poste est inutilisable "
            "(--ca-file, --cert-file, --key-file)."
        )
    if _has(text, _TLS_PLAINTEXT_PEER):
        return (
            f"Échec TLS avec {target} : le service ne répond pas en TLS. "
            "Retirez --tls et --ca-file, ou vérifiez le port."
        )
    if _has(text, _TLS_UNTRUSTED):
        return (
            f"Échec TLS avec {target} : le certificat du service n'est pas reconnu. "
            "Indiquez l'autorité qui l'a signé avec --ca-file."
        )
    if _has(text, _TLS_NAME):
        return (
            f"Échec TLS avec {target} : le certificat du service n'est pas au nom "
            f"de « {endpoint.host} »."
        )
    if endpoint.secure and _has(text, _TLS):
        return f"Échec de la négociation TLS avec {target} ({_last_error(details)})."
    return None


def _has(text: str, fragments: tuple[str, ...]) -> bool:
    return any(fragment in text for fragment in fragments)


def _last_error(details: str) -> str:
    return details.rsplit("last error:", 1)[-1].strip()
