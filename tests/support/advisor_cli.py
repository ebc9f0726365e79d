"""Running ``ameli-advisor`` as the advisor does: a separate process, on a pipe or a terminal.

The process is ``python -m ameli.advisor`` (the script's entry point, the one
that silences gRPC's C-core), with an environment that asks gRPC for its
debug lines: if they reach stderr, the silencing does not work. Also here:
servers that misbehave on purpose (a port that accepts and never answers) to
produce each connection failure for real.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

# What gRPC's C-core writes on stderr: "E1201 15:59:34.643155   12186 file.cc:1517] ...",
# its fork-support warnings and absl's pre-initialisation notice.
C_CORE_LINE = re.compile(
    r"^[EWIDF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+:\d+\]|Fork support|absl::InitializeLog|"
    r"ssl_transport_security|handshake",
    re.MULTILINE | re.IGNORECASE,
)
# gRPC's own settings of the environment, asking for everything it can print.
NOISY_GRPC = {"GRPC_VERBOSITY": "DEBUG", "GRPC_TRACE": "handshaker,tcp,channel"}
ENTRY_POINT = ("-m", "ameli.advisor")
# The command line without the entry point's settings (to show what they prevent).
BARE_MAIN = ("-c", "import sys; from ameli.auth.advisor_cli import main; sys.exit(main())")


@dataclass(frozen=True)
class Finished:
    """How an ``ameli-advisor`` process ended."""

    status: int
    stdout: str
    stderr: str


def advisor_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without the advisor's own settings, with gRPC asked to be noisy."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AMELI_ADVISOR_")}
    return {**environ, **NOISY_GRPC, **(extra or {})}


async def start_advisor(
    *args: str,
    stdin: int = asyncio.subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    entry: tuple[str, ...] = ENTRY_POINT,
) -> asyncio.subprocess.Process:
    """Start the command line (stdout and stderr piped; stdin closed unless given)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *entry,
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=advisor_environment(env),
    )


async def finish(process: asyncio.subprocess.Process, timeout: float = 30.0) -> Finished:  # noqa: ASYNC109 - a stuck command line must fail the test
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())


async def run_advisor(
    *args: str, env: Mapping[str, str] | None = None, entry: tuple[str, ...] = ENTRY_POINT
) -> Finished:
    """Run the command line to its end with stdin closed (not a terminal)."""
    return await finish(await start_advisor(*args, env=env, entry=entry))


class OnTerminal:
    """A running ``ameli-advisor`` whose stdin is a pseudo-terminal (stdout, stderr: pipes)."""

    def __init__(self, process: asyncio.subprocess.Process, terminal: int) -> None:
        self.process = process
        self._terminal = terminal

    async def read_question(self, end: bytes = b"[o/N] ") -> str:
        """The question on stderr, read up to ``end`` (the process now waits for an answer)."""
        assert self.process.stderr is not None
        return (await asyncio.wait_for(self.process.stderr.readuntil(end), 30)).decode()

    def type(self, text: str) -> None:
        os.write(self._terminal, text.encode())

    async def finish(self) -> Finished:
        return await finish(self.process)


@contextmanager
def pseudo_terminal() -> Iterator[tuple[int, int]]:
    """A pseudo-terminal: (the side the test types on, the side the process reads)."""
    typed, terminal = os.openpty()
    try:
        yield typed, terminal
    finally:
        os.close(typed)
        os.close(terminal)


async def start_on_terminal(terminal: tuple[int, int], *args: str) -> OnTerminal:
    """Start the command line with the pseudo-terminal as its stdin."""
    typed, tty = terminal
    return OnTerminal(await start_advisor(*args, stdin=tty), typed)


class SilentServer:
    """A loopback port that accepts TCP connections and never says anything.

    The kernel completes the connections (listen backlog) without the test
    accepting them, so a client waits for its deadline; ``connections()`` then
    accepts what is pending, to tell whether anybody connected at all.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=16)
        self._socket.setblocking(False)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._accepted: list[socket.socket] = []

    def connections(self) -> int:
        while True:
            try:
                connection, _ = self._socket.accept()
            except BlockingIOError:
                return len(self._accepted)
            self._accepted.append(connection)

    def close(self) -> None:
        for connection in self._accepted:
            connection.close()
        self._socket.close()


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def closed_port() -> str:
    """A loopback address where nothing listens (a port that was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"
