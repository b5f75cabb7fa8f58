"""What a running sweep shows. On a terminal: a live view (rich) of every job in flight, its device and
how long it has run, under a line with done/total, failures and the ETA; each finished job is printed
above it and stays in the scroll-back. Elsewhere (a pipe, a log file, CI): plain lines, one per event.

The ETA spreads the remaining jobs' expected time over the jobs in flight: the per-kind mean of this
run's jobs once one of the kind has ended, before that the store's earlier timings, else a guess (and
the ETA says so).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Protocol

from orchestrator.jobs import KINDS


class _Job(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def label(self) -> str: ...


def fmt(s: float) -> str:
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m" if s >= 3600 else f"{int(s // 60)}m{int(s % 60):02d}s"


class Progress:
    """Plain lines on `stream` (stderr by default)."""

    says_starts = True  # the live view shows the running jobs in its table instead

    def __init__(self, total: int, stream=None, quiet: bool = False, prior: dict[str, float] | None = None):
        self.total, self.started, self.done, self.failed = total, 0, 0, 0
        self.stream, self.quiet = stream, quiet
        self.prior = prior or {}
        self.per_kind: dict[str, list[float]] = {}
        self.running: dict[str, tuple[_Job, str | None, float]] = {}  # key -> (job, device, start)
        self.eta_s, self.eta_guessed = 0.0, False
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=self.stream or sys.stderr, flush=True)

    def skip(self, job: _Job, reason: str) -> None:
        self.started += 1
        self.done += 1
        self.failed += 1
        self.say(f"[skip] {job.label}: {reason}")

    def start(self, job: _Job, device: str | None = None) -> None:
        with self._lock:
            self.running[job.key] = (job, device, time.monotonic())
            self.started += 1
        where = f" on {device}" if device and len(self.running) > 1 else ""
        if self.says_starts:
            self.say(f"[{self.started}/{self.total}] {job.label}{where} …")

    def requeue(self, job: _Job, msg: str) -> None:
        with self._lock:
            self.running.pop(job.key, None)
            self.started -= 1
        self.say(msg)

    def end(self, job: _Job, wall: float, ok: bool, remaining: list[_Job], note: str = "") -> None:
        with self._lock:
            self.running.pop(job.key, None)
            self.done += 1
            self.failed += not ok
            self.per_kind.setdefault(job.kind, []).append(wall)
            slots = max(1, len(self.running) + 1)
            self.eta_s = sum(self.expected(j.kind) for j in remaining) / slots
            self.eta_guessed = any(self._guessed(j.kind) for j in remaining)
        # named: on a cluster other lines (a node's copy, a node lost) come between a start and its end
        self.say(f"    {'done' if ok else 'FAILED'} {job.label} in {wall:.1f}s{note}  ({self.done}/{self.total}, "
                 f"ETA {self.eta()})")

    def snapshot(self) -> dict:
        """Where the sweep is, as data: finished and failed jobs, the ETA, and each running job with its
        device and how long it has run."""
        now = time.monotonic()
        with self._lock:
            return {"finished": self.done, "failed": self.failed, "eta_s": round(self.eta_s, 1),
                    "running": [{"job": job.label, "device": device or "cpu", "for_s": round(now - t0, 1)}
                                for job, device, t0 in self.running.values()]}

    def eta(self) -> str:
        return f"~{fmt(self.eta_s)} (guessed)" if self.eta_guessed else fmt(self.eta_s)

    def _guessed(self, kind: str) -> bool:
        return not self.per_kind.get(kind) and kind not in self.prior

    def expected(self, kind: str) -> float:
        seen = self.per_kind.get(kind)
        if seen:
            return sum(seen) / len(seen)
        return self.prior.get(kind, KINDS[kind].guess_s if kind in KINDS else 60.0)


class LiveProgress(Progress):
    """The live view: rich redraws the running jobs four times a second; events scroll above it."""

    says_starts = False

    def __init__(self, total: int, console=None, prior: dict[str, float] | None = None):
        from rich.console import Console
        from rich.live import Live

        super().__init__(total, prior=prior)
        self.console = console or Console(stderr=True)
        self._live = Live(self, console=self.console, refresh_per_second=4, transient=True)

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        self._live.stop()

    def say(self, msg: str) -> None:
        self.console.print(msg, markup=False, highlight=False)

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        with self._lock:
            running = sorted(self.running.values(), key=lambda r: r[2])
            done, failed, eta = self.done, self.failed, self.eta()
        head = f"{done}/{self.total} done"
        head += f", {failed} failed" if failed else ""
        head += f" · {len(running)} running · ETA {eta}" if done else f" · {len(running)} running"
        head = Text(head, no_wrap=True, overflow="ellipsis")  # its own line, as wide as the terminal
        if not running:
            return head
        table = Table(box=None, pad_edge=False, show_edge=False)
        table.add_column("job", overflow="ellipsis", no_wrap=True)
        table.add_column("device", no_wrap=True)
        table.add_column("running", justify="right", no_wrap=True)
        table.add_column("expected", justify="right", no_wrap=True)
        for job, device, t0 in running:
            table.add_row(job.label, device or "cpu", fmt(now - t0), fmt(self.expected(job.kind)))
        return Group(head, table)


def make(total: int, *, quiet: bool = False, prior: dict[str, float] | None = None, stream=None) -> Progress:
    """The live view on a terminal, plain lines anywhere else (or when QUANTSWEEP_PLAIN is set, or when
    there is nothing to run: no '0/0 done' over an empty table)."""
    out = stream or sys.stderr
    live = (total > 0 and not quiet and out.isatty() and os.environ.get("TERM", "") != "dumb"
            and not os.environ.get("QUANTSWEEP_PLAIN") and not os.environ.get("CI"))
    return LiveProgress(total, prior=prior) if live else Progress(total, stream=stream, quiet=quiet, prior=prior)
