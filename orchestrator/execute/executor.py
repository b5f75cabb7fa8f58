"""What the coordinator asks of an executor (local threads, a Ray cluster): start jobs, hand back their
outcomes, cancel. An executor never decides what runs next or records anything; the coordinator never
knows where or how a job runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from orchestrator.jobs import spec as jobspec
from orchestrator.plan.graph import Job

if TYPE_CHECKING:
    from orchestrator.execute.coordinator import Coordinator


@dataclass
class Started:
    key: str
    where: str               # the device or node, as the progress and the status show it
    spec: jobspec.JobSpec
    on_device: bool = False  # a GPU job: out of memory there may be another job's doing (re-queued alone)


@dataclass
class Finished:
    started: Started
    outcome: jobspec.Outcome
    amends: bool = False  # what a done job's record lacked (its artifact's sha256, hashed beside the next tool)


class Executor(Protocol):
    name: str
    artifacts_here: bool  # artifacts are in the coordinator's workspace (verified there before a run)
    threads: jobspec.Threads

    def begin(self, co: Coordinator, todo: list[Job]) -> None:
        """Before any tool starts: connect, and refuse (disk, damaged or foreign logits, inputs)."""

    def start(self, co: Coordinator, open_keys: dict[str, Job], order: dict[str, int]) -> list[Started]:
        """Start what can start now among the open jobs (those not recorded yet this run, running ones
        included); return what started."""
        ...

    def busy(self) -> bool:
        """Anything still running."""
        ...

    def wait(self, co: Coordinator, timeout: float) -> list[Finished]:
        """The jobs that ended within `timeout` seconds (none is fine)."""
        ...

    def forget(self, key: str, where: Started) -> None:
        """The artifact of `key` that the job `where` read was found damaged (and removed): made again."""

    def cancel(self) -> None:
        """Ctrl-C: every job in flight is stopped; none is recorded."""

    def end(self) -> None:
        """The sweep is over."""

    def detail(self) -> dict:
        """What the status file shows of this back-end beyond the jobs (per node, mode…)."""
        ...
