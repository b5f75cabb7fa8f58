"""The Ray executor of a sweep on a cluster (`quantsweep run RECIPE --ray ADDRESS`); its tasks are in `ray_nodes.py`.

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
import time
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING, Sequence

from orchestrator import jobs as jobkinds, procs
from orchestrator.errors import InputFileError, UsageError
from orchestrator.execute import scheduler
from orchestrator.execute.executor import Finished, Started
from orchestrator.files import fits_disk
from orchestrator.jobs import spec as jobspec
from orchestrator.execute.ray_nodes import SHARED, NODE_RETRIES, execute, probe, ray_module
from orchestrator.plan.graph import Job

if TYPE_CHECKING:
    from orchestrator.execute.coordinator import Coordinator
# the coordinator


@dataclass
class Node:
    id: str
    host: str
    root: str
    gpus: list = field(default_factory=list)
    cpus: float = 1.0
    cpu: str = ""
    running: dict = field(default_factory=dict)  # key -> label: begun on the node
    queued: dict = field(default_factory=dict)   # key -> label: sent, held by Ray until its resources free
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
        self.lost: list[dict] = []                  # nodes lost mid-sweep: what they had done, where it went
        self._running: dict = {}                    # task (yields: began, outcome) -> (Started, node, sent at)
        self._counted: set[tuple[str, str]] = set()  # instances the progress counts as started
        self._tries: dict[tuple[str, str], int] = {}
        self._groups: dict[str, set[str]] = {}
        self._inputs: dict[str, str] = {}

    # -- before any tool starts -------------------------------------------------------------

    def begin(self, co: Coordinator, todo: list[Job]) -> None:
        ray = ray_module()
        self._inputs = {k: str(v) for k, v in co.inputs().items()}
        self._probe_nodes(co, co.logits_read(todo))
        self._place_groups(co, todo)
        self._groups = groups_of(co.plan.jobs)
        self._check_disks(co, todo)
        self._execute = ray.remote(execute)

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
        ray = ray_module()
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
        remote_probe = ray.remote(probe)
        refs = [remote_probe.options(num_cpus=0,
                                     scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(self.node_dir, str(self.shared) if self.shared else None, co.tc.commit, __version__,
                        self._inputs, artifacts, logits, co.tc.flavor) for n in alive]
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
        ray_module()
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
            args = (spec.model_dump(), self._root(node), self._inputs, node, co.tc.flavor)
            ref = self._execute.options(num_returns="streaming", **opts).remote(*args)
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
                self.nodes[node].queued[key] = co.jobs[key].label
        return started

    def busy(self) -> bool:
        return bool(self._running)

    def wait(self, co: Coordinator, timeout: float) -> list[Finished]:
        ray = ray_module()
        done, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout)
        out = []
        for task in done:
            started, node, sent = self._running[task]
            n = self.nodes.get(node)
            try:
                got = ray.get(next(task))
            except Exception as exc:  # noqa: BLE001  (sorted out below, with the task's end)
                got = exc
            if isinstance(got, dict) and got.get("began"):  # out of Ray's queue, onto the node
                if n is not None and started.key in n.queued:
                    n.running[started.key] = n.queued.pop(started.key)
                continue
            del self._running[task]
            if n is not None:
                n.running.pop(started.key, None)
                n.queued.pop(started.key, None)
            fin = self._arrived(co, got, started, node, sent)
            if fin is not None:
                out.append(fin)
        return out

    def _arrived(self, co: Coordinator, got, started: Started, node: str, sent: float) -> Finished | None:
        ray = ray_module()
        from ray.exceptions import RayTaskError

        key = started.key
        job = co.jobs[key]
        if isinstance(got, RayTaskError):  # our code raised on the node: recorded as this job's failure
            got = jobspec.Outcome(key=key, ok=False, reason=f"error on the node: {got.cause!r}").model_dump()
        elif isinstance(got, ray.exceptions.RayError):  # lost with its node, or its worker died
            got = self._lost(co, key, node, got)
            if got is None:
                return None  # made again: on another node, or on this one once more
        elif isinstance(got, BaseException):
            raise got
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
        who = ran_on if ran_on in self.nodes else node  # on a shared folder: the node Ray chose
        if who in self.nodes:
            self.nodes[who].done += out.ok
            self.nodes[who].failed += not out.ok
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
        ray = ray_module()
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
            self.lost.append({"node": lost.id, "host": lost.host, "done": lost.done, "failed": lost.failed,
                              "moved": moved, "to": to})
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
        ray = ray_module()
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
                           "running": list(n.running.values()), "queued": list(n.queued.values()),
                           "done": n.done, "failed": n.failed,
                           "weights": sorted(g for g, x in self.assign.items() if x == n.id)}
                          for n in self.nodes.values()],
                "lost": self.lost, "result_bytes": self.moved_bytes, "tasks": len(over),
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
