"""Which ready jobs start now, and where. Pure: no processes, no clock, no I/O.

- Critical path first: the reference model and the reference logits unblock every KLD job of their
  context, the quantizations every KLD and bench job of their weights; KLD before bench.
- CPU jobs (llama-quantize) take host threads and run beside device jobs, so a device never waits for
  a model that could have been made while it worked.
- Quality jobs (imatrix, base, KLD) reserve their memory estimate on one device in a ledger and share
  the device while the reservations fit: available = min(total − reserved − margin, live free − margin),
  so a foreign process on the device is respected. A job whose size is unknown, or re-queued after
  running out of memory, holds its device alone. At most `share` (2) jobs share a device, and only
  while more shareable jobs wait than there are devices: in a sweep's tail a job waits for a device of
  its own rather than double up on one that stays busy after the others are free.
- A bench holds its device alone; with `quiet_host` (the default) nothing CPU-heavy (a job that holds
  host threads) runs beside it: it starts only when none runs, and none starts while it measures. Jobs
  on other GPUs go on: they leave the CPU alone. A speed taken beside other work is a wrong number.
  Since a quantization keeps benches off the box, none starts while ready benches could fill GPUs that
  would otherwise sit idle (`_benches_first`).
- KLD jobs whose reference is streamed and the same (`feed`) go as a gang: one reference run feeds them
  all, placed as one unit on one device, as many as that device's memory holds (the reference once, each
  reader) and the host's, at most GANG (`gangs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from orchestrator.jobs import KINDS
from orchestrator.jobs.spec import JobSpec

MARGIN = 256 * 2**20  # kept free on every device beside the reservations
SHARE = 2  # the most jobs on one device at once: enough to fill one job's gaps, and the rest stay queued
GANG = 8   # the most KLD runs one streamed reference run feeds at once: a gang's results come together


@dataclass(frozen=True)
class Device:
    id: str                 # "cpu", or the id pinning uses (a GPU UUID, a ROCm index)
    name: str
    total: int              # bytes
    free: int               # bytes free now, as the driver says (foreign processes included)
    kind: str = "cpu"       # cpu | cuda | rocm | vulkan

    @property
    def is_host(self) -> bool:
        return self.kind == "cpu"


@dataclass(frozen=True)
class Inventory:
    devices: tuple[Device, ...]
    host_threads: int
    margin: int = MARGIN
    share: int = SHARE


@dataclass(frozen=True)
class Placement:
    key: str
    device: str | None      # None: a CPU job (host threads only)
    spec: JobSpec = field(compare=False)


def _uses_host_threads(spec: JobSpec, device: Device | None) -> bool:
    return spec.resources.where == "cpu" or device is None or device.is_host


def decide(ready: list[JobSpec], running: list[Placement], inv: Inventory) -> list[Placement]:
    """The jobs of `ready` to start now, each with its device; `running` are the jobs in flight."""
    devices = {d.id: d for d in inv.devices}
    now = list(running)
    start: list[Placement] = []
    order = sorted(range(len(ready)), key=lambda i: (KINDS[ready[i].kind].priority, i))
    hold_cpu = _benches_first(ready, now, inv)
    # sharing pays while there is a backlog; at the end of a sweep a job waits for a device of its own
    # rather than share one that will stay busy after the others are free
    backlog = sum(s.resources.where == "device" and not (s.resources.exclusive or s.resources.quiet_host)
                  for s in ready) > sum(not d.is_host for d in inv.devices)
    for i in order:
        spec = ready[i]
        if hold_cpu and spec.resources.where == "cpu":
            continue
        place = _place(spec, now, start, devices, inv, backlog)
        if place is not None:
            start.append(place)
            now.append(place)
    if not start and not running and order:
        # nothing runs and nothing fits (a model larger than any device's free memory): the first job
        # starts alone on the emptiest device and fails, or not, by what llama.cpp says
        spec = ready[order[0]]
        where = None if spec.resources.where == "cpu" else _by_room(inv.devices, [], [], inv)[0].id
        start.append(Placement(spec.key, where, spec))
    return start


def _benches_first(ready: list[JobSpec], now: list[Placement], inv: Inventory) -> bool:
    """Whether CPU jobs wait so that benches can run: a bench that keeps the host quiet never starts
    while a quantization runs, and on a box with several GPUs the next quantization would leave GPUs
    idle that ready benches could use. So while the ready benches can fill every GPU that other ready
    jobs leave idle, no quantization starts; those running finish, the benches run, then quantizing
    goes on. Fewer benches than idle GPUs: quantizing goes on (the GPUs would idle either way)."""
    benches = sum(1 for s in ready if KINDS[s.kind].speed and s.resources.quiet_host)
    busy = {p.device for p in now}
    idle = sum(1 for d in inv.devices if not d.is_host and d.id not in busy)
    others = sum(1 for s in ready if s.resources.where == "device" and not KINDS[s.kind].speed)
    return benches > 0 and benches >= idle - others > 0


def _place(spec: JobSpec, now: list[Placement], fresh: list[Placement], devices: dict[str, Device],
           inv: Inventory, backlog: bool = True) -> Placement | None:
    r = spec.resources
    threads_used = sum(p.spec.resources.threads for p in now
                       if _uses_host_threads(p.spec, devices.get(p.device) if p.device else None))
    # host threads are shared by CPU jobs and jobs on the CPU device; one job larger than the host runs alone
    threads_full = threads_used > 0 and threads_used + r.threads > inv.host_threads
    if r.threads > 0 and any(p.spec.resources.quiet_host for p in now):
        return None  # a bench measures: nothing CPU-heavy starts beside it
    if r.quiet_host and threads_used > 0:
        return None  # a bench starts when nothing CPU-heavy runs
    if r.where == "cpu":
        return None if threads_full else Placement(spec.key, None, spec)
    for dev in _by_room(devices.values(), now, fresh, inv):
        on_it = [p for p in now if p.device == dev.id]
        if (r.exclusive or r.quiet_host) and on_it or len(on_it) >= (inv.share if backlog else 1):
            continue
        if any(p.spec.resources.exclusive or p.spec.resources.quiet_host for p in on_it):
            continue
        if dev.is_host and threads_full:
            continue
        if r.device_bytes > available(dev, now, inv, fresh):
            continue
        return Placement(spec.key, dev.id, spec)
    return None


def reserved(dev: Device, now: list[Placement]) -> int:
    return sum(p.spec.resources.device_bytes for p in now if p.device == dev.id)


def available(dev: Device, now: list[Placement], inv: Inventory, fresh: Sequence[Placement] = ()) -> int:
    """What the ledger can still give on `dev`: its total less the reservations, never more than the
    live free memory allows (a foreign process is respected), a margin kept on both. `dev.free` was read
    with the jobs already running in it; `fresh` are those placed since, not yet in that reading."""
    return min(dev.total - reserved(dev, now) - inv.margin, dev.free - reserved(dev, list(fresh)) - inv.margin)


def _by_room(devices, now: list[Placement], fresh: list[Placement], inv: Inventory) -> list[Device]:
    """Emptiest first: a job goes where it disturbs least and leaves the most room."""
    return sorted(devices, key=lambda d: (sum(p.device == d.id for p in now), -available(d, now, inv, fresh)))


def gangs(ready: list[JobSpec], inv: Inventory, host_room: int | None = None,
          host_bytes: dict[str, tuple[int, int]] | None = None) -> list[list[JobSpec]]:
    """`ready` in groups that start as one: each job alone, but streamed KLD jobs with the same reference
    run (`feed`) together, as many as fit the largest device (the reference's memory once, each reader's)
    and `host_room` (`host_bytes`: a job's host bytes, of which its feed's), GANG at most. The order of
    `ready` is kept (a group stands where its first job did)."""
    room = max((d.total - inv.margin for d in inv.devices), default=0)
    out: list[list[JobSpec]] = []
    open_gang: dict[str, list[JobSpec]] = {}
    for spec in ready:
        r = spec.resources
        if spec.feed is None or r.exclusive:
            out.append([spec])
            continue
        key = repr(spec.feed)
        gang = open_gang.get(key)
        if gang is not None and len(gang) < GANG and _fits([*gang, spec], room, host_room, host_bytes or {}):
            gang.append(spec)
            continue
        open_gang[key] = [spec]
        out.append(open_gang[key])
    return out


def _fits(gang: list[JobSpec], room: int, host_room: int | None, host_bytes: dict[str, tuple[int, int]]) -> bool:
    feed = gang[0].resources.feed_bytes
    if feed + sum(s.resources.device_bytes - feed for s in gang) > room:
        return False
    if host_room is None:
        return True
    need = [host_bytes.get(s.key, (0, 0)) for s in gang]
    return need[0][1] + sum(total - fed for total, fed in need) <= host_room


def gang_spec(gang: list[JobSpec]) -> JobSpec:
    """What the scheduler places for a gang: its first job, holding the whole gang's memory and threads."""
    first, feed = gang[0], gang[0].resources.feed_bytes
    if len(gang) == 1:
        return first
    res = first.resources.model_copy(update={
        "device_bytes": feed + sum(s.resources.device_bytes - feed for s in gang),
        "threads": max(s.resources.threads for s in gang)})
    return first.model_copy(update={"resources": res})
