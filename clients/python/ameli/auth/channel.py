"""The channel ``connect()`` and ``connect_sync()`` open: TLS, keepalive, round robin, retries.

The options match the service's policy (SPEC §9–10): the server lets a client
ping every 10 s or more, calls or not, so the client pings an idle connection
every 30 s and gives up on it after 10 s without an answer; calls are spread
over every address the target resolves to (``round_robin``); and a call that
fails with ``UNAVAILABLE`` is tried again, at most 3 attempts in all, after a
short exponential backoff.

Only ``UNAVAILABLE`` is retried: the connection refused or dropped, a
handshake that failed, a name that does not resolve yet. A wrong password or
code is ``UNAUTHENTICATED`` and a lock ``RESOURCE_EXHAUSTED`` or
``FAILED_PRECONDITION``: never retried, so one attempt of the insured person is
counted once. The service's own ``SERVICE_UNAVAILABLE`` refusal (a database or
store that does not answer, with a RetryInfo) is ``UNAVAILABLE`` too and may be
retried by gRPC within the same deadline. That is accepted: it is never a wrong
entry's answer, and trying again shortly is what a gateway would do by hand;
the deadline bounds it (gRPC gives up as soon as the service's status carries
``grpc-retry-pushback-ms`` with a negative value, should the service ever want
to forbid it). ``DEADLINE_EXCEEDED`` is never retried: the deadline is the whole
call's, attempts included.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grpc

__all__ = [
    "SERVICE_CONFIG",
    "aio_channel",
    "channel_credentials",
    "channel_options",
    "sync_channel",
]

SERVICE_NAME = "ameli.auth.v1.AuthService"

SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}
"""The gRPC service config of the channel: round robin, transport failures retried."""

KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 10_000


def channel_options() -> list[tuple[str, str | int]]:
    """The channel arguments: the service config, retries on, keepalive within the
    server's policy (pings every 30 s, with or without calls)."""
    return [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


def channel_credentials(
    *,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials: the service's certificate checked against ``ca_file`` (PEM) or the
    system's roots, with a client certificate when ``cert_file`` and ``key_file`` are given."""
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together")
    roots = Path(ca_file).read_bytes() if ca_file is not None else None
    chain = Path(cert_file).read_bytes() if cert_file is not None else None
    key = Path(key_file).read_bytes() if key_file is not None else None
    return grpc.ssl_channel_credentials(
        root_certificates=roots, private_key=key, certificate_chain=chain
    )


def is_secure(
    tls: bool,
    ca_file: str | Path | None,
    cert_file: str | Path | None,
    key_file: str | Path | None,
) -> bool:
    """TLS when asked for, or implied by any of the files."""
    return tls or any(path is not None for path in (ca_file, cert_file, key_file))


def aio_channel(
    target: str,
    *,
    tls: bool = False,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.aio.Channel:
    """A ``grpc.aio`` channel to ``target`` with the options above."""
    if is_secure(tls, ca_file, cert_file, key_file):
        credentials = channel_credentials(ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        return grpc.aio.secure_channel(target, credentials, options=channel_options())
    return grpc.aio.insecure_channel(target, options=channel_options())


def sync_channel(
    target: str,
    *,
    tls: bool = False,
    ca_file: str | Path | None = None,
    cert_file: str | Path | None = None,
    key_file: str | Path | None = None,
) -> grpc.Channel:
    """A synchronous channel to ``target`` with the options above."""
    if is_secure(tls, ca_file, cert_file, key_file):
        credentials = channel_credentials(ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        return grpc.secure_channel(target, credentials, options=channel_options())
    return grpc.insecure_channel(target, options=channel_options())
