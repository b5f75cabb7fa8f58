"""The local executor: this box's devices, one thread per job in flight, each running its tool in its
own process group. It starts what the scheduler places on the devices free now and hands back outcomes;
the coordinator decides, records and reports."""

from __future__ import annotations

import functools
import shutil
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from orchestrator import jobs as jobkinds, procs
from orchestrator.errors import DiskSpaceError, HostMemoryError, InputFileError
from orchestrator.execute import devices, scheduler, worker
from orchestrator.execute.executor import Finished, Started
from orchestrator.files import disk_of, fits_disk
from orchestrator.jobs import spec as jobspec
from orchestrator.plan.graph import Job
from orchestrator.plan.memory import gib as human

if TYPE_CHECKING:
    from orchestrator.execute.coordinator import Coordinator


def thread_policy(inv: scheduler.Inventory, parallel: int = 1) -> jobspec.Threads:
    """A CPU box splits its cores between `parallel` jobs (one job takes them all: the tools' default).
    On a GPU box a device job holds no host thread, and two quantize jobs share the cores, so the
    models the devices wait for are made twice as fast as one at a time would."""
    host = inv.host_threads
    if any(d.is_host for d in inv.devices):
        share = max(1, host // parallel)
        return jobspec.Threads(cpu=share if parallel > 1 else None, cpu_hold=share,
                               device=share if parallel > 1 else None, device_hold=share)
    half = max(1, host // 2)
    return jobspec.Threads(cpu=half if host > 1 else None, cpu_hold=half, device=None, device_hold=0)


class LocalExecutor:
    name = "local"
    artifacts_here = True  # every artifact is in this workspace: the coordinator verifies them

    def __init__(self, found=None, parallel: int = 1, backends: tuple[str, ...] = ("CPU",)):
        found = found if found is not None else devices.find(backends)
        self._found = {f.device.id: f for f in found}
        self.inventory = devices.inventory(found)
        self.threads = thread_policy(self.inventory, parallel)
        self._running: dict[Future, list[Started]] = {}  # a gang's jobs run in one future
        self._placed: dict[Future, scheduler.Placement] = {}  # … placed as one
        self._hashing: dict[Future, Started] = {}  # the sha256 of artifacts just made, one at a time
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._hasher: ThreadPoolExecutor | None = None

    # -- before any tool starts ------------------------------------------------------------

    def begin(self, co: Coordinator, todo: list[Job]) -> None:
        check_disk(co, todo)
        check_host_memory(co, todo, on_host=all(d.is_host for d in self.inventory.devices))
        check_logits(co, todo)
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(todo)), thread_name_prefix="quantsweep-job")
        # a job's artifact is hashed while the next tool runs (a spare core does it; a single-core box
        # shares one): the job is recorded at once, its sha256 added when known
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quantsweep-hash")
        worker.STOP_HASHING.clear()

    # -- the interface the coordinator drives ----------------------------------------------

    def start(self, co: Coordinator, open_keys: dict[str, Job], order: dict[str, int]) -> list[Started]:
        busy = {s.key for started in self._running.values() for s in started}
        if busy or len(open_keys) - len(busy) > 1:  # free memory read again: foreign processes are respected
            self.inventory = devices.inventory(devices.refresh(list(self._found.values())),
                                               self.inventory.host_threads)
        ready = [j for j in sorted(open_keys.values(), key=lambda j: order[j.key])
                 if j.key not in busy and not any(d in open_keys for d in j.deps)]
        groups = scheduler.gangs([co.spec(j) for j in ready], self.inventory, *self._host_room(co, ready))
        by_lead = {g[0].key: g for g in groups}
        started = []
        env = co.worker_env()
        assert self._pool is not None
        for place in scheduler.decide([scheduler.gang_spec(g) for g in groups], list(self._placed.values()),
                                      self.inventory):
            dev = self._found.get(place.device)
            on_device = dev is not None and dev.device.kind != "cpu"
            gang = by_lead[place.key]
            now = [Started(m.key, place.device or "cpu", m, on_device=on_device) for m in gang]
            pin = dev.pin_env() if dev else None
            fut: Future[jobspec.Outcome | list[jobspec.Outcome]]
            if len(gang) > 1:
                if not on_device:  # the gang's tools share the cores: each takes its part, none spins idle
                    gang = [worker.with_threads(m, max(1, self.inventory.host_threads // (len(gang) + 1)))
                            for m in gang]
                fut = self._pool.submit(worker.run_gang, gang, env, device_env=pin, device=place.device or "cpu")
            else:
                fut = self._pool.submit(worker.run, place.spec, env, device_env=pin, device=place.device or "cpu",
                                        hash_later=functools.partial(self._hash, now[0]))
            self._running[fut], self._placed[fut] = now, place
            started += now
        return started

    def _host_room(self, co: Coordinator, ready: list[Job]) -> tuple[int | None, dict[str, tuple[int, int]]]:
        """The host memory a gang may take now, and each streamed job's host bytes with its feed's."""
        fed = {j.key: j for j in ready if co.spec(j).feed is not None}
        if len(fed) < 2:
            return None, {}
        on_host = all(d.is_host for d in self.inventory.devices)
        need = {}
        for key, job in fed.items():
            kind, up = jobkinds.kind(job.kind), {d: co.result(d) for d in job.deps}
            need[key] = (kind.host_bytes(job, co.plan, up, on_host), kind.feed_host_bytes(job, co.plan, up, on_host))
        _, available = devices.host_memory()
        return (available - HOST_MARGIN if available else None), need

    def _hash(self, s: Started, work) -> None:
        """From a job's thread, before its outcome is returned: so the coordinator knows of the hash when
        it records the job."""
        assert self._hasher is not None
        with self._lock:
            self._hashing[self._hasher.submit(work)] = s

    def busy(self) -> bool:
        return bool(self._running or self._hashing)

    def wait(self, co: Coordinator, timeout: float) -> list[Finished]:
        with self._lock:
            futures = [*self._running, *self._hashing]
        done, _ = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            if f in self._running:
                started, got = self._running.pop(f), f.result()
                del self._placed[f]
                out += [Finished(s, o) for s, o in zip(started, got if isinstance(got, list) else [got])]
                continue
            with self._lock:
                s = self._hashing.pop(f)
            try:
                amendment = f.result()
            except OSError:  # the file went away since it was made: the next run's checks make it again
                continue
            out.append(Finished(s, jobspec.Outcome(key=s.key, ok=True, result=amendment), amends=True))
        return out

    def forget(self, key: str, where: Started) -> None:
        pass  # the coordinator's open set is all it takes here

    def cancel(self) -> None:
        procs.kill_all()  # every tool in flight dies with its process group; none is recorded
        worker.STOP_HASHING.set()  # a hash half-way is given up: the next run hashes that artifact
        for pool in (self._pool, self._hasher):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def end(self) -> None:
        for pool in (self._pool, self._hasher):
            if pool is not None:
                pool.shutdown(wait=True)

    def detail(self) -> dict:
        return {}


# -- the guards every back-end runs before any tool starts ---------------------------------------


def disk_need(co: Coordinator, todo: list[Job]) -> tuple[int, int]:
    """What the artifacts of `todo` take on disk: (all, of which reference logits)."""
    need = co.plan.disk_bytes(j.key for j in todo)
    return need, sum(j.params.logits_bytes for j in todo if jobkinds.kind(j.kind).makes == "logits")


def disk_refusal(need: int, logits: int, free: int, where: str, disk: str = "") -> DiskSpaceError:
    on = f", on {disk}" if disk else ""
    return DiskSpaceError(f"this run writes about {human(need)} (models {human(need - logits)}, reference logits "
                          f"{human(logits)}) but {where} has {human(free)} free{on}: free space, or lower "
                          "evaluation.chunks")


def check_disk(co: Coordinator, todo: list[Job]) -> None:
    """The models, importance matrices and reference logits this run writes must fit the workspace's disk
    (models estimated from their type, logits exact), with 5 % to spare."""
    need, logits = disk_need(co, todo)
    if not need:
        return
    co.ws.root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(co.ws.root).free
    if not fits_disk(need, free):
        raise disk_refusal(need, logits, free, str(co.ws.root), disk_of(co.ws.root))


def check_host_memory(co: Coordinator, todo: list[Job], on_host: bool) -> None:
    """The run whose tool holds the most of this machine's memory (a long context's logits) must fit what
    the machine has available now: refused in one line before any tool starts."""
    need, job = jobkinds.host_need(co.plan, [j.key for j in todo], {}, on_host)
    problem = host_memory_problem(need, job, *devices.host_memory(), on_host)
    if problem:
        raise HostMemoryError(problem)


HOST_MARGIN = 256 << 20  # the figure is within 1 % of the tools' peak RSS from ctx 4096 on: this covers it


def host_memory_problem(need: int, job: Job | None, total: int, available: int, on_host: bool) -> str | None:
    """Why the largest run cannot fit this machine's memory, or None."""
    if job is None or not available or need + HOST_MARGIN <= available:
        return None
    what = f"its logits at ctx {job.params.ctx}" + (", with the model on the CPU" if on_host else "")
    return (f"{job.label} would hold ≈{human(need, 1)} of host memory ({what}); this machine has "
            f"{human(available, 1)} available of {human(total, 1)}: lower evaluation.ctx or evaluation.batch, "
            "or run it where there is more memory")


def check_logits(co: Coordinator, todo: list[Job]) -> None:
    """Reference logits kept from an earlier run are checked before a KLD run reads them; a damaged or
    foreign file stops the run here, named, and is left as it is."""
    from orchestrator.tools.perplexity import logits_problem

    for key in sorted(co.logits_read(todo)):
        path, params = co.artifact_path(key), co.jobs[key].params
        if path.exists():
            problem = logits_problem(path, params.n_vocab, params.ctx)
            if problem:
                raise InputFileError(f"{path}: {problem}; not used. Delete it and run again to compute it anew")
