"""The schedule a plan will get: the real scheduler driven by a clock instead of processes. `plan`
shows it (which device each job is expected on, the predicted wall time) and `make bench` measures
the scheduler with it on simulated boxes (makespan against its lower bound)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from orchestrator.execute import scheduler
from orchestrator.jobs.spec import JobSpec
from orchestrator.plan.graph import Job



@dataclass(frozen=True)
class Slot:
    key: str
    device: str | None
    start: float
    end: float


@dataclass(frozen=True)
class Schedule:
    slots: dict[str, Slot]
    makespan: float

    def busy(self, device: str) -> float:
        """The share of the makespan `device` had at least one job."""
        spans = [(s.start, s.end) for s in self.slots.values() if s.device == device]
        return covered(spans) / self.makespan if self.makespan else 0.0


def covered(spans: list[tuple[float, float]]) -> float:
    """The time at least one of the (start, end) spans covers."""
    total, end = 0.0, 0.0
    for a, b in sorted(spans):
        a = max(a, end)
        if b > a:
            total, end = total + b - a, b
    return total


def run(jobs: list[Job], spec_of: Callable[[Job], JobSpec], inv: scheduler.Inventory,
        duration: Callable[[JobSpec], float]) -> Schedule:
    """Jobs placed by the real scheduler; `duration` is a job's time with its device to itself. Jobs
    sharing a device share its speed (m jobs each progress at 1/m): sharing fills a device, it does not
    make compute from nothing. CPU jobs (quantize) progress on the host's own cores."""
    pending = {j.key: j for j in jobs}
    order = {j.key: i for i, j in enumerate(jobs)}
    specs = {j.key: spec_of(j) for j in jobs}
    running: dict[str, scheduler.Placement] = {}
    left: dict[str, float] = {}
    slots: dict[str, Slot] = {}
    t = 0.0
    while pending or running:
        busy = set(running)
        ready = [specs[k] for k in sorted(pending, key=lambda k: order[k])
                 if not any(d in pending or d in busy for d in pending[k].deps)]
        for place in scheduler.decide(ready, list(running.values()), inv):
            del pending[place.key]
            running[place.key] = place
            left[place.key] = duration(place.spec)
            slots[place.key] = Slot(place.key, place.device, t, t)
        if not running:
            raise RuntimeError(f"the scheduler starts nothing of {sorted(pending)}")
        sharing: dict = {}
        for p in running.values():
            if p.device is not None:
                sharing[p.device] = sharing.get(p.device, 0) + 1
        rate = {k: 1.0 / sharing[p.device] if p.device is not None else 1.0 for k, p in running.items()}
        step = min(left[k] / rate[k] for k in running)
        t += step
        for k in list(running):
            left[k] -= step * rate[k]
            if left[k] <= 1e-9:
                slots[k] = Slot(k, running[k].device, slots[k].start, t)
                del running[k], left[k]
    return Schedule(slots, t)


def lower_bound(jobs: list[Job], duration_of: Callable[[Job], float], n_slots: int,
                on_slot: Callable[[Job], bool] = lambda j: True) -> float:
    """No schedule beats the longest dependency chain, nor, for any time t, t plus the work of the
    slot jobs that cannot start before t spread over every slot (the release-date bound of parallel
    machine scheduling; t = 0 gives total work ÷ slots). A job cannot start before its longest chain
    of predecessors has run; jobs off the slots (`on_slot` false: quantize on the host's cores)
    count in chains only."""
    secs = {j.key: duration_of(j) for j in jobs}
    head: dict[str, float] = {}
    for j in jobs:  # plan order is topological
        head[j.key] = max((head[d] + secs[d] for d in j.deps), default=0.0)
    chain = max((head[j.key] + secs[j.key] for j in jobs), default=0.0)
    slot_jobs = sorted((head[j.key], secs[j.key]) for j in jobs if on_slot(j))
    best, work_after = 0.0, 0.0
    for release, work in reversed(slot_jobs):
        work_after += work
        best = max(best, release + work_after / max(1, n_slots))
    return max(chain, best)
