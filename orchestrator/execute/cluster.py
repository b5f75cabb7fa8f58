"""A sweep on a Ray cluster (`quantsweep run RECIPE --ray ADDRESS`).

This machine stays the coordinator: it decides what runs, and alone writes the store. Each job becomes
a Ray task with its spec's resources (a GPU fraction from the memory ledger for a quality job that can
share, a whole GPU for a bench, CPUs for a quantization), runs the same `worker.run` as a local sweep on
the node Ray gives it, and returns its Outcome: a few KB.

Where the data is, is explicit, because reference logits are tens of GB:

- node-local (the default): each weights quant's jobs (its quantization, imatrix, KLD and bench jobs)
  stay on one node, and what several of them read (the reference model, the reference logits) is made
  on each node that needs it, in that node's own folder. The base-logits job and the KLD jobs that read
  it therefore run on the same node, and no artifact crosses the network: one base run per node and
  context is the price. A node lost mid-sweep takes its artifacts with it; its weights move to
  another node, which makes what they need again.
- shared (`--ray-shared DIR`): every node reads and writes DIR (NFS and the like), so a job runs
  wherever Ray puts it, and Ray retries a task lost with its node elsewhere.

Inputs (the model, corpora, imatrix files) must be at the same path on every node (a shared HF cache, or
the same download on each); each node uses its own llama.cpp build, which must be the coordinator's
commit, since job keys include it. A probe on every node checks all of this before anything runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING, Sequence

from orchestrator import jobs as jobkinds, procs
from orchestrator.errors import InputFileError, UsageError
from orchestrator.execute import scheduler, worker
from orchestrator.execute.executor import Finished, Started
from orchestrator.files import fits_disk
from orchestrator.jobs import spec as jobspec
from orchestrator.plan import memory
from orchestrator.plan.graph import Job

if TYPE_CHECKING:
    from orchestrator.execute.coordinator import Coordinator

INSTALL = "--ray needs Ray: pip install 'quantsweep[ray]' (here and on every node of the cluster)"
SAFETY = ("Ray runs without authentication unless the cluster was started with RAY_AUTH_MODE=token; between "
          "real nodes keep its ports (GCS 6379, node manager, object manager, workers) on a private network")
NODE_RETRIES = 3  # a task lost to a worker crash on a node still alive is tried this many times more
SHARED = "shared"


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL) from None
    return ray


def connect(address: str | None, out=None) -> None:
    """Join the cluster at `address` ("auto", "ray://head:10001", host:port; RAY_ADDRESS when None),
    or start one on this machine for "local"."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(address=address, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    except ConnectionError as exc:
        raise UsageError(f"--ray {address}: no Ray cluster there ({exc}); start one with `ray start --head`, "
                         "or use --ray local for one on this machine") from None
    if out is not None and address != "local":
        out(f"note: {SAFETY}")


def alive_nodes() -> int:
    return sum(1 for n in _ray().nodes() if n.get("Alive"))


# ---------------------------------------------------------------------------------------------
# what runs on the nodes


def node_root(base: str, node_id: str) -> str:
    """A node's own workspace: the node's id in the path, so two nodes never share one by accident (two
    nodes on one machine, as in the tests, stay apart)."""
    return str(Path(base) / f"node-{node_id[:12]}")


def _probe(base: str | None, shared: str | None, commit: str, version: str, inputs: dict[str, str],
           artifacts: dict[str, dict], logits: dict[str, tuple[int, int]]) -> dict:
    """On one node: its identity, devices, toolchain, the inputs it can read, the artifacts it holds, what
    is wrong with the reference logits it holds (`logits`: key -> (n_vocab, ctx)) and its free disk."""
    import shutil
    import socket

    import ray

    from orchestrator import __version__
    from orchestrator.execute import devices
    from orchestrator.tools import toolchain
    from orchestrator.tools.perplexity import logits_problem
    from orchestrator.workspace import Workspace

    node = ray.get_runtime_context().get_node_id()
    problems = []
    if __version__ != version:
        problems.append(f"quantsweep {__version__} here, {version} on the coordinator")
    try:
        tc = toolchain.find()
        backends = tuple(tc.backends)
        if tc.commit != commit:
            problems.append(f"llama.cpp {tc.commit} here, {commit} on the coordinator (job keys include it)")
    except Exception as exc:  # noqa: BLE001  (any reason is reported, with the node's name)
        backends = ("CPU",)
        problems.append(f"no llama.cpp tools: {exc}")
    missing = [p for p in inputs.values() if not Path(p).is_file()]
    if missing:
        problems.append(f"inputs not on this node: {', '.join(missing[:3])} (put them on a path every node "
                        "reads, e.g. a shared HF_HOME)")
    root = shared or node_root(base or str(toolchain.cache_root() / "ray"), node)
    env = worker.WorkerEnv(tool=str, ws=Workspace(root), inputs={k: Path(v) for k, v in inputs.items()})
    have = [k for k, ref in artifacts.items() if env.artifact(jobspec.Ref(**ref)).is_file()]
    bad = {}
    for k in set(have) & logits.keys():
        path = env.artifact(jobspec.Ref(**artifacts[k]))
        problem = logits_problem(path, *logits[k])
        if problem:  # truncated: made again here; not ours at all: the coordinator refuses it, untouched
            bad[k] = (str(path), problem)
            have.remove(k)
    existing = Path(root)
    while not existing.exists():
        existing = existing.parent
    gpus = [{"id": f.device.id, "name": f.device.name, "total": f.device.total}
            for f in devices.find(backends) if f.device.kind != "cpu"]
    return {"node": node, "host": socket.gethostname(), "cpu": toolchain.cpu_model(), "root": root, "have": have,
            "gpus": gpus, "problems": problems, "bad_logits": bad, "free": shutil.disk_usage(existing).free}


def _execute(spec: dict, root: str, inputs: dict[str, str], node: str) -> dict:
    """On a node: one job, exactly as a local sweep runs it; Ray pins the GPU (CUDA_VISIBLE_DEVICES)."""
    import ray

    from orchestrator.tools import toolchain
    from orchestrator.workspace import Workspace

    t0 = time.monotonic()
    tc = toolchain.find()
    env = worker.WorkerEnv(tool=tc.exe, ws=Workspace(root), inputs={k: Path(v) for k, v in inputs.items()})
    gpus = ray.get_gpu_ids()
    where = f"{node[:8]}" + (f" gpu {','.join(map(str, gpus))}" if gpus else "")
    out = worker.run(jobspec.JobSpec(**spec), env, device=where)
    return {**out.model_dump(), "node": ray.get_runtime_context().get_node_id(), "gpu_ids": list(map(str, gpus)),
            "task_s": time.monotonic() - t0}


# ---------------------------------------------------------------------------------------------
# the coordinator


@dataclass
class Node:
    id: str
    host: str
    root: str
    gpus: list = field(default_factory=list)
    cpus: float = 1.0
    cpu: str = ""
    running: dict = field(default_factory=dict)  # key -> label
    done: int = 0
    failed: int = 0


class RayExecutor:
    """Jobs as Ray tasks. A job instance is (job key, node): a job every weights quant of a node needs (the
    reference model, the reference logits) runs once per node in node-local mode; the coordinator records
    the first instance of an open job to end, the others are that node's own copies."""

    name = "ray"
    artifacts_here = False  # they live on the nodes: each node checks its own before they are read

    def __init__(self, address: str | None = None, shared: Path | None = None, node_dir: str | None = None, *,
                 found=None, parallel: int = 1, backends: tuple[str, ...] = ("CPU",)):
        from orchestrator.execute import devices
        from orchestrator.execute.local import thread_policy

        self.address, self.shared, self.node_dir = address, shared, node_dir
        found = found if found is not None else devices.find(backends)
        self.threads = thread_policy(devices.inventory(found), parallel)
        self.nodes: dict[str, Node] = {}
        self.assign: dict[str, str] = {}            # group (weights label) -> node
        self.on: set[tuple[str, str]] = set()       # (artifact key, node) held there
        self.results_on: dict[tuple[str, str], dict] = {}
        self.moved_bytes: dict[str, dict] = {}      # per job kind: tasks, bytes of specs sent and results back
        self.overhead: list[float] = []             # per task: sent to result back, less the tool's own wall
        self._running: dict = {}                    # ObjectRef -> (Started, node, sent at)
        self._counted: set[tuple[str, str]] = set()  # instances the progress counts as started
        self._tries: dict[tuple[str, str], int] = {}
        self._groups: dict[str, set[str]] = {}
        self._inputs: dict[str, str] = {}

    # -- before any tool starts -------------------------------------------------------------

    def begin(self, co: Coordinator, todo: list[Job]) -> None:
        ray = _ray()
        self._inputs = {k: str(v) for k, v in co.inputs().items()}
        self._probe_nodes(co, co.logits_read(todo))
        self._place_groups(co, todo)
        self._groups = groups_of(co.plan.jobs)
        self._check_disks(co, todo)
        self._execute = ray.remote(_execute)

    def _check_disks(self, co: Coordinator, todo: list[Job]) -> None:
        """What each node (or the shared folder) will hold must fit its disk, with 5 % to spare."""
        from orchestrator.execute.local import disk_refusal

        per: dict[str, set[str]] = {}
        for key, node in self._needed(co, {j.key for j in todo}):
            per.setdefault(node, set()).add(key)
        for node, keys in sorted(per.items()):
            need = co.plan.disk_bytes(keys)
            free = self._free[node]
            if need and not fits_disk(need, free):
                logits = co.plan.disk_bytes(k for k in keys if jobkinds.kind(co.jobs[k].kind).makes == "logits")
                raise disk_refusal(need, logits, free, f"{self._root(node)} on {self._where(node)}")

    def _probe_nodes(self, co: Coordinator, read: set[str]) -> None:
        """Every node's identity, devices, toolchain, inputs and artifacts; the reference logits a KLD job of
        this run reads as they are must be this model's (as on a local run: refused, named, untouched)."""
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from orchestrator import __version__

        artifacts, logits = {}, {}
        for j in co.plan.jobs:
            out = jobkinds.output_ref(j)
            if out is not None:
                artifacts[j.key] = out.model_dump()
                if out.ref == "logits":
                    logits[j.key] = (j.params.n_vocab, j.params.ctx)
        alive = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(_probe)
        refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(self.node_dir, str(self.shared) if self.shared else None, co.tc.commit, __version__,
                        self._inputs, artifacts, logits) for n in alive]
        problems, foreign = [], []
        cpus = {n["NodeID"]: n.get("Resources", {}).get("CPU", 1) for n in alive}
        self._free: dict[str, int] = {}
        for info in ray.get(refs):
            if info["problems"]:
                problems.append(f"node {info['host']} ({info['node'][:8]}): {'; '.join(info['problems'])}")
                continue
            self.nodes[info["node"]] = Node(info["node"], info["host"], info["root"], info["gpus"],
                                            cpus.get(info["node"], 1), info["cpu"])
            where = SHARED if self.shared is not None else info["node"]
            self._free[where] = info["free"]
            for k in info["have"]:
                self.on.add((k, where))
            for k, (path, problem) in info["bad_logits"].items():
                if problem.startswith("truncated") or k not in read:
                    co.progress.say(f"    {co.jobs[k].label} on {info['host']}: {problem}; made again")
                else:
                    foreign.append(f"{path} on {info['host']}: {problem}; not used. Delete it and run again to "
                                   "compute it anew")
        if problems:
            raise UsageError("not every node of the cluster can run this sweep:\n  " + "\n  ".join(problems))
        if foreign:
            raise InputFileError("\n  ".join(foreign))
        if not self.nodes:
            raise UsageError("the Ray cluster has no live node")

    # -- groups and placement ---------------------------------------------------------------

    def _place_groups(self, co: Coordinator, todo: list[Job]) -> None:
        load: dict[str, int] = {n: 0 for n in self.nodes}
        for n in self.assign.values():
            if n in load:
                load[n] += 1
        groups = groups_of(co.plan.jobs)
        for j in todo:
            for g in sorted(groups[j.key]):
                if g not in self.assign or self.assign[g] not in self.nodes:
                    node = min(load, key=lambda n: (load[n], n))
                    self.assign[g] = node
                    load[node] += 1

    def _node_of(self, key: str) -> str:
        if self.shared is not None:
            return SHARED
        gs = sorted(self._groups[key])
        return self.assign[gs[0]] if gs and gs[0] in self.assign else min(self.nodes)

    def _needed(self, co: Coordinator, open_keys) -> set[tuple[str, str]]:
        need: set[tuple[str, str]] = set()

        def want(key: str, node: str) -> None:
            # an open job runs (and is recorded) even where a file of its key is left from another
            # sweep: its result is part of the record
            if (key, node) in need or (key, node) in self.on and key not in open_keys:
                return
            need.add((key, node))
            for d in co.jobs[key].deps:
                if jobkinds.makes_artifact(co.jobs[d].kind):
                    want(d, node)

        for key in open_keys:
            want(key, self._node_of(key))
        return need

    # -- resources --------------------------------------------------------------------------

    def _options(self, spec: jobspec.JobSpec, node: str) -> dict:
        _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        r = spec.resources
        n = self.nodes.get(node) if node != SHARED else None
        gpus = n.gpus if n is not None else next((x.gpus for x in self.nodes.values() if x.gpus), [])
        opts: dict = {"num_cpus": 1, "num_gpus": 0}
        if r.where == "device" and gpus:
            total = min(g["total"] for g in gpus) if all(g.get("total") for g in gpus) else 0
            if r.exclusive or r.quiet_host or not r.device_bytes:
                opts["num_gpus"] = 1
            else:  # the ledger as a fraction: several quality jobs share a GPU while their memory fits
                share = (r.device_bytes + scheduler.MARGIN) / total if total else 1 / scheduler.SHARE
                opts["num_gpus"] = min(1.0, math.ceil(max(share, 1 / scheduler.SHARE) * 100) / 100)
        cpus = n.cpus if n is not None else min(x.cpus for x in self.nodes.values())
        if r.quiet_host or not gpus:
            # a bench measures with nothing CPU-heavy beside it; on a node without GPUs every job runs its
            # tool on all the node's cores (the tools' default), so one at a time, as on a CPU box here
            opts["num_cpus"] = cpus
        if node == SHARED:
            opts["max_retries"] = NODE_RETRIES  # Ray retries a task lost with its node elsewhere
        else:
            opts["max_retries"] = 0  # its artifacts are on that node: the coordinator moves the group
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node, soft=False)
        return opts

    # -- the interface the coordinator drives -----------------------------------------------

    def start(self, co: Coordinator, open_keys: dict[str, Job], order: dict[str, int]) -> list[Started]:
        need = self._needed(co, open_keys)
        busy = {(s.key, node) for s, node, _ in self._running.values()}
        started = []
        first = lambda kn: (jobkinds.kind(co.jobs[kn[0]].kind).priority, order[kn[0]])  # noqa: E731
        for key, node in sorted(need - busy, key=first):
            deps = co.jobs[key].deps
            up = next((co.failed[d] for d in deps if d in co.failed), None)
            if up is not None:
                if key not in open_keys:  # a node's copy that cannot be made: what reads it there fails too
                    co.failed[key] = f"upstream failed: {up}"
                continue
            if not all(d not in open_keys and ((d, node) in self.on or not jobkinds.makes_artifact(co.jobs[d].kind))
                       for d in deps):
                continue
            spec = self._node_spec(co, co.jobs[key], node)
            opts = self._options(spec, node)
            args = (spec.model_dump(), self._root(node), self._inputs, node)
            ref = self._execute.options(**opts).remote(*args)
            self._count(spec.kind, "sent", len(json.dumps(args, default=str)))
            s = Started(key, self._where(node), spec, on_device=opts["num_gpus"] > 0)
            self._running[ref] = (s, node, time.monotonic())
            if key in open_keys and not any(k == key for k, _ in busy):
                started.append(s)
                self._counted.add((key, node))
            else:
                co.progress.say(f"    {co.jobs[key].label}: made again on {s.where}, where its readers run")
            busy.add((key, node))
            if node in self.nodes:
                self.nodes[node].running[key] = co.jobs[key].label
        return started

    def busy(self) -> bool:
        return bool(self._running)

    def wait(self, co: Coordinator, timeout: float) -> list[Finished]:
        ray = _ray()
        done, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout)
        out = []
        for ref in done:
            started, node, sent = self._running.pop(ref)
            if node in self.nodes:
                self.nodes[node].running.pop(started.key, None)
            fin = self._arrived(co, ref, started, node, sent)
            if fin is not None:
                out.append(fin)
        return out

    def _arrived(self, co: Coordinator, ref, started: Started, node: str, sent: float) -> Finished | None:
        ray = _ray()
        from ray.exceptions import RayTaskError

        key = started.key
        job = co.jobs[key]
        try:
            got = ray.get(ref)
        except RayTaskError as exc:  # our code raised on the node: recorded as this job's failure
            got = jobspec.Outcome(key=key, ok=False, reason=f"error on the node: {exc.cause!r}").model_dump()
        except ray.exceptions.RayError as exc:  # lost with its node, or its worker died
            got = self._lost(co, key, node, exc)
            if got is None:
                return None  # made again: on another node, or on this one once more
        self._count(job.kind, "back", len(json.dumps(got)))
        ran_on, task_s, gpu_ids = got.pop("node", node), got.pop("task_s", None), got.pop("gpu_ids", [])
        out = jobspec.Outcome(**got)
        if out.ok and ran_on in self.nodes:  # the results' provenance: the node's machine, not this one's
            n = self.nodes[ran_on]
            gpu = "; ".join(g["name"] for i, g in enumerate(n.gpus) if str(i) in gpu_ids or g["id"] in gpu_ids)
            out = out.model_copy(update={"result": {**out.result, "ran_on": {
                "node": ran_on, "host": n.host, "cpu": n.cpu, "gpu": gpu}}})
        if task_s is not None:  # Ray's part: dispatch (with any wait for resources) and the way back
            self.overhead.append(time.monotonic() - sent - task_s)
        self._counted.discard((key, node))
        if node in self.nodes:
            self.nodes[node].done += out.ok
            self.nodes[node].failed += not out.ok
        if out.ok:
            self.on.add((key, node))
            self.results_on[(key, node)] = out.result
        if key not in co.open:  # a copy made on another node for the jobs there: not recorded again
            if not out.ok:
                co.failed[key] = out.reason
            co.progress.say(f"    {job.label} on {self._where(node)}: {'done' if out.ok else 'FAILED: ' + out.reason}")
            return None
        return Finished(Started(key, self._where(ran_on), started.spec, started.on_device), out)

    def forget(self, key: str, where: Started) -> None:
        self.on = {(k, n) for k, n in self.on if k != key}

    def _count(self, kind: str, way: str, n: int) -> None:
        per = self.moved_bytes.setdefault(kind, {"tasks": 0, "sent": 0, "back": 0})
        per[way] += n
        per["tasks"] += way == "sent"

    def _requeue(self, co: Coordinator, key: str, node: str, msg: str) -> None:
        if (key, node) in self._counted:  # started again later: counted once
            self._counted.discard((key, node))
            co.requeue(key, msg)
        else:
            co.progress.say(msg)

    def _lost(self, co: Coordinator, key: str, node: str, exc) -> dict | None:
        """A task that did not come back: its node died (its weights move, with what they need, to the
        nodes left), or its worker did (tried again, NODE_RETRIES times, then a failure)."""
        ray = _ray()
        if node != SHARED and node not in self.nodes:  # its node's loss is already handled: it runs elsewhere
            self._requeue(co, key, node, f"    {co.jobs[key].label}: lost with its node, made again")
            return None
        alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        if node != SHARED and node not in alive:
            lost = self.nodes.pop(node)
            self.on = {(k, n) for k, n in self.on if n != node}
            moved = sorted(g for g, n in self.assign.items() if n == node)
            for g in moved:
                del self.assign[g]
            if not self.nodes:
                raise RuntimeError("every node of the cluster was lost") from exc
            self._place_groups(co, [j for j in co.plan.jobs if j.cell is not None and j.cell.weights in moved])
            to = ", ".join(sorted({self._where(self.assign[g]) for g in moved}))
            self._requeue(co, key, node,
                          f"    node {lost.host} ({node[:8]}) lost: {', '.join(moved) or 'nothing'} moved to {to}")
            return None
        self._tries[(key, node)] = self._tries.get((key, node), 0) + 1
        if self._tries[(key, node)] <= NODE_RETRIES:
            self._requeue(co, key, node,
                          f"    {co.jobs[key].label}: {type(exc).__name__} on {self._where(node)}; tried again")
            return None
        return jobspec.Outcome(key=key, ok=False, reason=f"lost {self._tries[(key, node)]} times on the cluster: "
                               f"{type(exc).__name__}").model_dump()

    def _node_spec(self, co: Coordinator, job: Job, node: str) -> jobspec.JobSpec:
        mine = {d: r for (d, n), r in self.results_on.items() if n == node and d in job.deps}
        spec = co.spec(job, upstream=mine)
        if node != SHARED:  # a node's own copy (its GPU's logits) is checked against what it made, no other's
            spec = spec.model_copy(update={"expect": [e for e in spec.expect if (e.ref.key, node) in self.results_on]})
        return spec

    def cancel(self) -> None:
        ray = _ray()
        for ref in self._running:  # the cluster's tasks are cancelled, their tools die with them
            ray.cancel(ref, force=True)
        procs.kill_all()

    def end(self) -> None:
        pass

    def _root(self, node: str) -> str:
        return str(self.shared) if node == SHARED else self.nodes[node].root

    def _where(self, node: str) -> str:
        if node == SHARED:
            return "the cluster"
        n = self.nodes.get(node)
        return f"{n.host} ({node[:8]})" if n else node[:8]

    def detail(self) -> dict:
        """The status file's view of the cluster: per node, what runs, done and failed; what crossed the
        network; Ray's cost per task."""
        over = sorted(self.overhead)
        return {"address": self.address, "mode": "shared " + str(self.shared) if self.shared else "node-local",
                "nodes": [{"node": n.id, "host": n.host, "gpus": [g["name"] for g in n.gpus],
                           "running": list(n.running.values()), "done": n.done, "failed": n.failed,
                           "weights": sorted(g for g, x in self.assign.items() if x == n.id)}
                          for n in self.nodes.values()],
                "result_bytes": self.moved_bytes, "tasks": len(over),
                "overhead_s": {"min": over[0], "median": over[len(over) // 2]} if over else None}


def groups_of(jobs: Sequence[Job]) -> dict[str, set[str]]:
    """Each job's weights quants: a KLD or bench job has its cell's; any other job those of the jobs that
    read it. A job of one group stays with it; one of several is made wherever they run."""
    groups: dict[str, set[str]] = {j.key: set() for j in jobs}
    for j in reversed(jobs):  # plan order puts a job after what it reads
        if j.cell is not None:
            groups[j.key].add(j.cell.weights)
        for d in j.deps:
            groups[d] |= groups[j.key]
    return groups

RESULT_BYTES = 2048  # a job's spec out and its outcome back, each about this (measured: 1–2 KiB)


def placement_lines(p, nodes: int, shared: Path | None) -> list[str]:
    """What `plan --ray` says of a sweep on `nodes` nodes: where the data is, what runs more than once,
    and what crosses the network."""
    def gib(n: float) -> str:
        return memory.gib(n, 1)

    weights = sorted({j.cell.weights for j in p.jobs if j.cell is not None})
    bases = p.of_kind("base")
    logits = sum(j.params.logits_bytes for j in bases)
    reference = p.inputs.source_info.n_params * 2  # an F16/BF16 copy of the model
    messages = f"the job specs and results, about {gib(2 * RESULT_BYTES * len(p.jobs))} for {len(p.jobs)} jobs"
    if shared is not None:
        return [f"ray, shared {shared}: jobs run on any of {nodes} nodes; every artifact is made once and written "
                f"there: {gib(logits)} of reference logits, ~{gib(reference)} of reference model and the quantized "
                f"models; each KLD job reads its model and the logits from it over the network, and {messages}"]
    used = min(nodes, len(weights))
    lines = [f"ray, node-local on {nodes} nodes: {len(weights)} weights quants on {used} of them, each one's "
             "jobs (quantize, KLD, bench) on one node, in its own folder"]
    if used > 1:
        lines.append(f"  the reference model and the {len(bases)} reference-logits job(s) run on each of those "
                     f"{used} nodes ({used - 1} more time(s) than on one box): each holds {gib(logits)} of logits "
                     f"and ~{gib(reference)} of reference model")
    lines.append(f"  crossing the network: no artifact; {messages}")
    return lines
