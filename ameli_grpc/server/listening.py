"""Whether an address can be listened on, asked before gRPC binds it.

gRPC reports a port in use as a bare ``RuntimeError`` after printing its own
C-core line; probing with a plain socket first gives a clear reason, in one
line, and ``CannotListen`` for the command line to name the setting.
"""

from __future__ import annotations

import socket


class CannotListen(Exception):
    """The address cannot be bound: in use, not local, or not resolvable."""


def ensure_can_listen(address: str, *, reuse_port: bool = False) -> None:
    """Raise ``CannotListen`` unless ``host:port`` (IPv6 in brackets) can be bound now.

    As gRPC binds: every address the host resolves to, ``SO_REUSEADDR`` set
    (so a restart is not blocked by connections in TIME_WAIT), and
    ``SO_REUSEPORT`` when the server shares the port between workers; gRPC
    fails only when none of the addresses can be bound, and so does this.
    """
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        candidates = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError, ValueError):
        raise CannotListen(f"cannot listen on {address}: {host!r} does not resolve") from None
    problems = []
    for family, kind, protocol, _name, socket_address in candidates:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                probe.bind(socket_address)
            except OSError as error:
                problems.append(error.strerror or type(error).__name__)
                continue
            return
    raise CannotListen(f"cannot listen on {address}: {'; '.join(dict.fromkeys(problems))}")
