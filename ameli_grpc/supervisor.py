"""``serve --workers N``: the parent process keeps N worker processes alive.

- A worker that dies is started again after a short back-off, logged
  ``worker_exited`` then ``worker_restarted`` (the new pid, the dead one's pid
  and exit status).
- A crash loop is given up on instead of spinning: when a worker has died
  within ``min_uptime`` of its start ``crash_loop_limit`` times in a row, the
  parent logs ``workers_crash_loop``, stops the other workers and exits 1. A
  worker that refused its settings (exit status 2) is not restarted at all:
  ``worker_refused_to_start``, the others stopped, exit 2.
- SIGTERM and SIGINT are passed on to every worker, which drains; a worker
  that exits from then on is not restarted. The exit status is 0 when every
  worker stopped cleanly.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import structlog

log = structlog.get_logger("ameli_grpc.supervisor")

REFUSED = 2  # the exit status of a process that refused its settings
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class _Slot:
    """One of the N places: its current process, and how the last ones ended."""

    number: int
    process: BaseProcess
    started: float
    exit_code: int | None = None  # set once the process has exited
    quick_deaths: int = 0  # in a row, each within min_uptime of its start
    restart_at: float | None = None


class Supervisor:
    def __init__(
        self,
        target: Callable[..., object],
        args: tuple[Any, ...],
        workers: int,
        *,
        name: str = "ameli-grpc-worker",
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        min_uptime: float = 10.0,
        crash_loop_limit: int = 5,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._target = target
        self._args = args
        self._workers = workers
        self._name = name
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._min_uptime = min_uptime
        self._crash_loop_limit = crash_loop_limit
        self._on_exit = on_exit  # told each dead worker's pid (its metrics no longer live)
        self._slots: list[_Slot] = []
        self._stopping = False
        self._signalled: int | None = None  # set by the handler, logged by the loop
        self._status: int | None = None  # set when the parent gives up

    def run(self) -> int:
        """Start the workers, keep them alive until signalled; the exit status."""
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        try:
            for number in range(self._workers):
                if self._stopping:
                    break
                self._slots.append(self._spawn(number))
                self._stop_if_stopping(self._slots[-1])
            log.info(
                "workers_started",
                workers=self._workers,
                pids=[slot.process.pid for slot in self._slots],
            )
            while self._watch():
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        codes = [slot.exit_code for slot in self._slots]
        log.info("workers_stopped", exit_codes=codes)
        if self._status is not None:
            return self._status
        return 0 if all(code == 0 for code in codes) else 1

    def _watch(self) -> bool:
        """Wait for a worker to exit or a restart to fall due; False once every worker is gone."""
        if self._signalled is not None:
            log.info("stopping_workers", signal=signal.Signals(self._signalled).name)
            self._signalled = None
        running = [slot for slot in self._slots if slot.exit_code is None]
        pending = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        if not running and not pending:
            return False
        now = time.monotonic()
        # At most a second, so that a signal is logged soon even while no worker exits.
        timeout = min(max(min(pending, default=now + 1.0) - now, 0.0), 1.0)
        wait([slot.process.sentinel for slot in running], timeout)
        now = time.monotonic()
        for slot in running:
            if slot.process.exitcode is not None:
                self._exited(slot, now)
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self._restart(slot)
        return True

    def _exited(self, slot: _Slot, now: float) -> None:
        pid, code = slot.process.pid, slot.process.exitcode
        slot.exit_code = code
        if self._on_exit is not None and pid is not None:
            self._on_exit(pid)
        if self._stopping:
            return
        if code == REFUSED:
            log.error(
                "worker_refused_to_start",
                pid=pid,
                exit_code=code,
                detail="not restarted: the settings will not change; stopping the other workers",
            )
            self._give_up(REFUSED)
            return
        quick = now - slot.started < self._min_uptime
        slot.quick_deaths = slot.quick_deaths + 1 if quick else 0
        if slot.quick_deaths >= self._crash_loop_limit:
            log.error(
                "workers_crash_loop",
                pid=pid,
                exit_code=code,
                deaths_in_a_row=slot.quick_deaths,
                detail=f"a worker died within {self._min_uptime:g} s of its start "
                f"{slot.quick_deaths} times in a row: giving up, stopping the other workers",
            )
            self._give_up(1)
            return
        delay = min(self._backoff * 2 ** max(slot.quick_deaths - 1, 0), self._max_backoff)
        log.warning("worker_exited", pid=pid, exit_code=code, restart_in_seconds=delay)
        slot.restart_at = now + delay

    def _restart(self, slot: _Slot) -> None:
        previous_pid, code = slot.process.pid, slot.exit_code
        slot.process.close()
        fresh = self._spawn(slot.number)
        slot.process, slot.started, slot.exit_code, slot.restart_at = (
            fresh.process,
            fresh.started,
            None,
            None,
        )
        self._stop_if_stopping(slot)
        log.warning(
            "worker_restarted",
            pid=slot.process.pid,
            previous_pid=previous_pid,
            exit_code=code,
            worker=slot.number,
        )

    def _spawn(self, number: int) -> _Slot:
        process = self._context.Process(
            target=self._target, args=self._args, name=f"{self._name}-{number}"
        )
        process.start()
        return _Slot(number, process, time.monotonic())

    def _stop_if_stopping(self, slot: _Slot) -> None:
        """A worker started while a signal came in (before its slot was seen) stops too."""
        if self._stopping and slot.process.pid:
            _kill(slot.process.pid, signal.SIGTERM)

    def _give_up(self, status: int) -> None:
        self._status = status
        self._stop_all(signal.SIGTERM)

    def _stop_all(self, signum: int) -> None:
        """Pass ``signum`` on to every live worker; no restart from now on."""
        self._stopping = True
        for slot in self._slots:
            slot.restart_at = None
            if slot.exit_code is None and slot.process.pid:
                _kill(slot.process.pid, signum)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only what is safe in a signal handler: no logging here (the loop logs it).
        self._signalled = signum
        self._stop_all(signum)


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
