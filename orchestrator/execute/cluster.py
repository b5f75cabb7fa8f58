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

from orchestrator.plan import jobspec, memory
from orchestrator import procs
from orchestrator.execute import scheduler, worker
from orchestrator.errors import UsageError
from orchestrator.plan.graph import Job
from orchestrator.execute.coordinator import ARTIFACT_KINDS, RESULTS_EVERY_S, Runner, Summary

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
           artifacts: dict[str, dict]) -> dict:
    """On one node: its identity, devices, toolchain, the inputs it can read and the artifacts it holds."""
    import socket

    import ray

    from orchestrator import __version__
    from orchestrator.execute import devices
    from orchestrator.tools import toolchain
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
    gpus = [{"id": f.device.id, "name": f.device.name, "total": f.device.total}
            for f in devices.find(backends) if f.device.kind != "cpu"]
    return {"node": node, "host": socket.gethostname(), "cpu": toolchain.cpu_model(), "root": root, "have": have,
            "gpus": gpus, "problems": problems}


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


class ClusterRunner(Runner):
    """Runner whose jobs run as Ray tasks. A job instance is (job key, node): a job every weights quant of
    a node needs (the reference model, the reference logits) runs once per node in node-local mode."""

    def __init__(self, *args, address: str | None = None, shared: Path | None = None, node_dir: str | None = None,
                 status_path: Path | None = None, **kw):
        super().__init__(*args, **kw)
        self.address, self.shared, self.node_dir = address, shared, node_dir
        self.status_path = status_path
        self.nodes: dict[str, Node] = {}
        self.assign: dict[str, str] = {}            # group (weights label) -> node
        self.on: set[tuple[str, str]] = set()       # (artifact key, node) held there
        self.results_on: dict[tuple[str, str], dict] = {}
        self.recorded: set[str] = set()             # keys recorded this run (done or failed)
        self.moved_bytes: dict[str, dict] = {}      # per job kind: tasks, bytes of specs sent and results back
        self.exclusive: set[str] = set()            # keys that ran out of memory beside other jobs
        self.overhead: list[float] = []             # per task: sent to result back, less the tool's own wall
        self._sent: dict = {}
        self._counted: set[tuple[str, str]] = set()  # instances the progress counts as started

    # which jobs are open: not done in the store (a done artifact missing on a node is handled per node)
    def to_run(self) -> list[Job]:
        need, _ = self.open_jobs()
        return [j for j in self.plan.jobs if j.key in need]

    def _publish_status(self, state: str) -> None:
        pass  # a cluster sweep publishes its own status, per node (ray-status.json)

    def _check_logits(self, todo: list[Job]) -> None:
        pass  # the logits live on the nodes: each KLD job's judge checks what its run printed

    def _check_disk(self, todo: list[Job]) -> None:
        pass  # nothing big is written here

    # -- groups and placement ---------------------------------------------------------------

    def _groups(self) -> dict[str, set[str]]:
        """Each job's weights quants: a KLD or bench job has its cell's; any other job those of the jobs
        that read it. A job of one group stays with it; one of several is made wherever they run."""
        groups: dict[str, set[str]] = {k: set() for k in self.jobs}
        for j in reversed(self.plan.jobs):  # plan order puts a job after what it reads
            if j.cell is not None:
                groups[j.key].add(j.cell.weights)
            for d in j.deps:
                groups[d] |= groups[j.key]
        return groups

    def _place_groups(self, todo: list[Job]) -> None:
        load: dict[str, int] = {n: 0 for n in self.nodes}
        for n in self.assign.values():
            if n in load:
                load[n] += 1
        groups = self._groups()
        for j in todo:
            for g in sorted(groups[j.key]):
                if g not in self.assign or self.assign[g] not in self.nodes:
                    node = min(load, key=lambda n: (load[n], n))
                    self.assign[g] = node
                    load[node] += 1

    def _node_of(self, key: str, groups: dict[str, set[str]]) -> str:
        if self.shared is not None:
            return SHARED
        gs = sorted(groups[key])
        return self.assign[gs[0]] if gs and gs[0] in self.assign else min(self.nodes)

    def _needed(self, open_keys: set[str], groups) -> set[tuple[str, str]]:
        need: set[tuple[str, str]] = set()

        def want(key: str, node: str) -> None:
            # an open job runs (and is recorded) even where a file of its key is left from another
            # sweep: its result is part of the record
            if (key, node) in need or (key, node) in self.on and key not in open_keys:
                return
            need.add((key, node))
            for d in self.jobs[key].deps:
                if self.jobs[d].kind in ARTIFACT_KINDS:
                    want(d, node)

        for key in open_keys:
            want(key, self._node_of(key, groups))
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

    # -- the loop ---------------------------------------------------------------------------

    def _probe_nodes(self) -> None:
        ray = _ray()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from orchestrator import __version__

        artifacts = {}
        for j in self.plan.jobs:
            if j.kind in ARTIFACT_KINDS:
                spec = jobspec.build(j, self.plan, {}, self.threads)
                if spec.output is not None:
                    artifacts[j.key] = spec.output.model_dump()
        inputs = {k: str(v) for k, v in self._inputs().items()}
        alive = [n for n in ray.nodes() if n.get("Alive")]
        probe = ray.remote(_probe)
        refs = [probe.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(self.node_dir, str(self.shared) if self.shared else None, self.tc.commit, __version__,
                        inputs, artifacts) for n in alive]
        problems = []
        cpus = {n["NodeID"]: n.get("Resources", {}).get("CPU", 1) for n in alive}
        for info in ray.get(refs):
            if info["problems"]:
                problems.append(f"node {info['host']} ({info['node'][:8]}): {'; '.join(info['problems'])}")
                continue
            self.nodes[info["node"]] = Node(info["node"], info["host"], info["root"], info["gpus"],
                                            cpus.get(info["node"], 1), info["cpu"])
            for k in info["have"]:
                self.on.add((k, SHARED if self.shared is not None else info["node"]))
        if problems:
            raise UsageError("not every node of the cluster can run this sweep:\n  " + "\n  ".join(problems))
        if not self.nodes:
            raise UsageError("the Ray cluster has no live node")

    def _loop(self, todo: list[Job], summary: Summary, progress, run_id: int) -> None:
        ray = _ray()
        self._probe_nodes()
        self._place_groups(todo)
        groups = self._groups()
        inputs = {k: str(v) for k, v in self._inputs().items()}
        open_keys = {j.key for j in todo}
        order = {j.key: i for i, j in enumerate(self.plan.jobs)}
        running: dict = {}  # ObjectRef -> (key, node)
        tries: dict[tuple[str, str], int] = {}
        written = time.monotonic()
        execute = ray.remote(_execute)
        self._started = time.monotonic()
        try:
            while True:
                for key in sorted(open_keys, key=order.get):  # upstream failures: skipped, as locally
                    up = next((self.failed[d] for d in self.jobs[key].deps if d in self.failed), None)
                    if up is not None:
                        self.failed[key] = f"upstream failed: {up}"
                        progress.skip(self.jobs[key], self.failed[key])
                        open_keys.discard(key)
                        self.recorded.add(key)
                need = self._needed(open_keys, groups)
                busy = set(running.values())
                for key, node in sorted(need - busy, key=lambda kn: (scheduler.PRIORITY[self.jobs[kn[0]].kind],
                                                                     order[kn[0]])):
                    deps_ready = all(d not in open_keys and ((d, node) in self.on or self.jobs[d].kind
                                                            not in ARTIFACT_KINDS) for d in self.jobs[key].deps)
                    if not deps_ready or any(d in self.failed for d in self.jobs[key].deps):
                        continue
                    spec = self._node_spec(self.jobs[key], node)
                    args = (spec.model_dump(), self._root(node), inputs, node)
                    ref = execute.options(**self._options(spec, node)).remote(*args)
                    self._count(spec.kind, "sent", len(json.dumps(args, default=str)))
                    running[ref] = (key, node)
                    self._sent[ref] = time.monotonic()
                    where = self._where(node)
                    if key in open_keys and not any(k == key for k, _ in busy):
                        progress.start(self.jobs[key], where)
                        self._counted.add((key, node))
                    else:
                        progress.say(f"    {self.jobs[key].label}: made again on {where}, where its readers run")
                    busy.add((key, node))
                    if node in self.nodes:
                        self.nodes[node].running[key] = self.jobs[key].label
                self._publish(len(todo))
                if not running:
                    if need:
                        raise RuntimeError(f"no job can start: {sorted(need)}")  # a bug, never a state
                    break
                done, _ = ray.wait(list(running), num_returns=1, timeout=RESULTS_EVERY_S)
                for ref in done:
                    key, node = running.pop(ref)
                    sent = self._sent.pop(ref)
                    if node in self.nodes:
                        self.nodes[node].running.pop(key, None)
                    self._arrived(ref, key, node, open_keys, running, tries, summary, progress, sent)
                if time.monotonic() - written > RESULTS_EVERY_S:
                    self._write_results(run_id)
                    written = time.monotonic()
        except BaseException:  # Ctrl-C: the cluster's tasks are cancelled, their tools die with them
            for ref in running:
                ray.cancel(ref, force=True)
            procs.kill_all()
            raise
        finally:
            self._publish(len(todo), finished=True)

    def _arrived(self, ref, key: str, node: str, open_keys: set[str], running: dict, tries: dict,
                 summary: Summary, progress, sent: float) -> None:
        ray = _ray()
        from ray.exceptions import RayTaskError

        job = self.jobs[key]
        try:
            got = ray.get(ref)
        except RayTaskError as exc:  # our code raised on the node: recorded as this job's failure
            got = jobspec.Outcome(key=key, ok=False, reason=f"error on the node: {exc.cause!r}").model_dump()
        except ray.exceptions.RayError as exc:  # lost with its node, or its worker died
            got = self._lost(key, node, exc, tries, progress)
            if got is None:
                return  # made again: on another node, or on this one once more
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
        if not out.ok and out.out_of_memory and key not in self.exclusive:
            self.exclusive.add(key)  # another job on the GPU may have taken the memory: once more, alone
            progress.say(f"    out of memory: {job.label} again with a GPU to itself")
            return
        if node in self.nodes:
            self.nodes[node].done += out.ok
            self.nodes[node].failed += not out.ok
        if out.ok:
            self.on.add((key, node))
            self.results_on[(key, node)] = out.result
        if key not in open_keys:  # a copy made on another node for the jobs there: not recorded again
            if not out.ok:
                self.failed[key] = out.reason
            progress.say(f"    {job.label} on {self._where(node)}: {'done' if out.ok else 'FAILED: ' + out.reason}")
            return
        open_keys.discard(key)
        self.recorded.add(key)
        place = scheduler.Placement(key, self._where(ran_on), self._node_spec(job, node))
        self._record(job, place, out, None, summary, progress, [self.jobs[k] for k in open_keys])

    def _uncount(self, key: str, node: str, progress, msg: str) -> None:
        if (key, node) in self._counted:  # started again later: counted once
            self._counted.discard((key, node))
            progress.requeue(self.jobs[key], msg)
        else:
            progress.say(msg)

    def _count(self, kind: str, way: str, n: int) -> None:
        per = self.moved_bytes.setdefault(kind, {"tasks": 0, "sent": 0, "back": 0})
        per[way] += n
        per["tasks"] += way == "sent"

    def _lost(self, key: str, node: str, exc, tries: dict, progress) -> dict | None:
        """A task that did not come back: its node died (its weights move, with what they need, to the
        nodes left), or its worker did (tried again, NODE_RETRIES times, then a failure)."""
        ray = _ray()
        if node != SHARED and node not in self.nodes:  # its node's loss is already handled: it runs elsewhere
            self._uncount(key, node, progress, f"    {self.jobs[key].label}: lost with its node, made again")
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
            self._place_groups([j for j in self.plan.jobs if j.cell is not None and j.cell.weights in moved])
            to = ", ".join(sorted({self._where(self.assign[g]) for g in moved}))
            self._uncount(key, node, progress,
                          f"    node {lost.host} ({node[:8]}) lost: {', '.join(moved) or 'nothing'} moved to {to}")
            return None
        tries[(key, node)] = tries.get((key, node), 0) + 1
        if tries[(key, node)] <= NODE_RETRIES:
            self._uncount(key, node, progress,
                          f"    {self.jobs[key].label}: {type(exc).__name__} on {self._where(node)}; tried again")
            return None
        return jobspec.Outcome(key=key, ok=False, reason=f"lost {tries[(key, node)]} times on the cluster: "
                               f"{type(exc).__name__}").model_dump()

    def _node_spec(self, job: Job, node: str) -> jobspec.JobSpec:
        upstream = {d: self.results_on.get((d, node)) or self._result(d)
                    for d in job.params.values() if isinstance(d, str) and d in self.jobs}
        spec = jobspec.build(job, self.plan, upstream, self.threads)
        if node != SHARED:  # a node's own copy (its GPU's logits) is checked against what it made, no other's
            mine = [e for e in spec.expect if (e.ref.key, node) in self.results_on]
            spec = spec.model_copy(update={"expect": mine})
        if job.key in self.exclusive:
            spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"exclusive": True})})
        return spec

    def _root(self, node: str) -> str:
        return str(self.shared) if node == SHARED else self.nodes[node].root

    def _where(self, node: str) -> str:
        if node == SHARED:
            return "the cluster"
        n = self.nodes.get(node)
        return f"{n.host} ({node[:8]})" if n else node[:8]

    def _publish(self, total: int, finished: bool = False) -> None:
        """`quantsweep status` reads this: per node, what runs, done and failed; the sweep's done/total."""
        if self.status_path is None:
            return
        from orchestrator.files import write_text_atomic

        done = len(self.recorded)
        elapsed = time.monotonic() - getattr(self, "_started", time.monotonic())
        eta = elapsed / done * (total - done) if done and not finished else None
        state = {"recipe": self.inp.recipe.name, "address": self.address,
                 "state": "finished" if finished else "running",
                 "mode": "shared " + str(self.shared) if self.shared else "node-local", "total": total, "done": done,
                 "failed": len(self.failed), "eta_s": eta, "updated": time.time(),
                 "nodes": [{"node": n.id, "host": n.host, "gpus": [g["name"] for g in n.gpus],
                            "running": list(n.running.values()), "done": n.done, "failed": n.failed,
                            "weights": sorted(g for g, x in self.assign.items() if x == n.id)}
                           for n in self.nodes.values()],
                 "result_bytes": self.moved_bytes, "tasks": len(self.overhead),
                 "overhead_s": {"min": min(self.overhead), "median": sorted(self.overhead)[len(self.overhead) // 2]}
                 if self.overhead else None}
        write_text_atomic(self.status_path, json.dumps(state, indent=1))


RESULT_BYTES = 2048  # a job's spec out and its outcome back, each about this (measured: 1–2 KiB)


def placement_lines(p, nodes: int, shared: Path | None) -> list[str]:
    """What `plan --ray` says of a sweep on `nodes` nodes: where the data is, what runs more than once,
    and what crosses the network."""
    def gib(n: float) -> str:
        return memory.gib(n, 1)

    weights = sorted({j.cell.weights for j in p.jobs if j.cell is not None})
    bases = p.of_kind("base")
    logits = sum(j.params["logits_bytes"] for j in bases)
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


def status_lines(path: Path) -> list[str]:
    """`quantsweep status` for a sweep on a Ray cluster."""
    from orchestrator.execute.progress import fmt

    if not path.is_file():
        return []
    s = json.loads(path.read_text())
    eta = f", ETA {fmt(s['eta_s'])}" if s["state"] == "running" and s.get("eta_s") else ""
    lines = [f"ray {s['address']}  {s['recipe']}: {s['state']} ({s['mode']}); {s['done']}/{s['total']} jobs done, "
             f"{s['failed']} failed{eta}"]
    for n in s["nodes"]:
        gpus = ", ".join(n["gpus"]) or "CPU"
        running = "; running: " + ", ".join(n["running"]) if n["running"] else ""
        lines.append(f"  {n['host']} ({n['node'][:8]}, {gpus}): {n['done']} done, {n['failed']} failed; weights "
                     f"{', '.join(n['weights']) or '—'}{running}")
    return lines
