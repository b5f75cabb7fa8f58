"""The Ray side of `run --ray`: joining the cluster, what runs on its nodes (a probe of each node, one job
as a task), and what `plan --ray` says of a sweep there. The executor that drives them is `cluster.py`."""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.execute import worker
from orchestrator.jobs import spec as jobspec
from orchestrator.plan import memory

INSTALL = "--ray needs Ray: pip install 'quantsweep[ray]' (here and on every node of the cluster)"
SAFETY = ("this client uses no Ray token (RAY_AUTH_MODE=token with RAY_AUTH_TOKEN_PATH, the same on every node, turns "
          "token authentication on; Ray 2.59+ does for a cluster it starts itself): keep the cluster's ports (GCS "
          "6379, node manager, object manager, workers) on a private network")
NODE_RETRIES = 3  # a task lost to a worker crash on a node still alive is tried this many times more
SHARED = "shared"


def ray_module():
    try:
        import ray
    except ImportError:
        raise UsageError(INSTALL) from None
    return ray


def connect(address: str | None, out=None) -> None:
    """Join the cluster at `address` ("auto", "ray://head:10001", host:port; RAY_ADDRESS when None),
    or start one on this machine for "local"."""
    ray = ray_module()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    auth = getattr(ray.exceptions, "AuthenticationError", ())  # Ray 2.59+
    failed = None
    with _ray_noise() as noise:  # Ray's own lines while it connects (a dozen when it cannot): kept aside
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except auth:
            raise UsageError(TOKEN.format(address=address)) from None
        except ConnectionError as exc:
            noise.seek(0)
            said, failed = noise.read(), exc
    if failed is not None:
        if b"InvalidAuthToken" in said:  # what Ray says only in its own lines
            raise UsageError(TOKEN.format(address=address))
        if os.environ.get("RAY_AUTH_MODE") == "token":
            why = ("or it refused this client's token (RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN must hold the "
                   "cluster's)")
        else:
            why = ("or it asks for a token this client has not (set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH "
                   "to the cluster's token file)")
        raise UsageError(f"--ray {address}: no Ray cluster there, {why} ({str(failed).splitlines()[0]}); start one "
                         "with `ray start --head`, or use --ray local for one on this machine")
    if out is not None and address != "local" and os.environ.get("RAY_AUTH_MODE") != "token":
        out(f"note: {SAFETY}")


@contextmanager
def own_lines_to(path: Path):
    """While a sweep runs on the cluster: what Ray's core writes to standard error itself (a lost raylet dumps
    dozens of `[state-dump]` lines) goes to `path`; quantsweep's own lines (Python's sys.stderr) still reach the
    terminal."""
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=python_stderr.encoding or "utf-8",
                           errors="replace")
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sys.stderr.close()
            sys.stderr = python_stderr


TOKEN = ("--ray {address}: the cluster refused this client's authentication token (none, or another): set "
         "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH (or RAY_AUTH_TOKEN) to the cluster's token before quantsweep "
         "starts")


@contextmanager
def _ray_noise():
    """Standard error, at the file-descriptor level (Ray's C++ core writes there), into an unnamed temporary
    file for the block (nothing is left on disk)."""
    with tempfile.TemporaryFile() as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            yield f
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def alive_nodes() -> int:
    return sum(1 for n in ray_module().nodes() if n.get("Alive"))


# ---------------------------------------------------------------------------------------------
# what runs on the nodes


def node_root(base: str, node_id: str) -> str:
    """A node's own workspace: the node's id in the path, so two nodes never share one by accident (two
    nodes on one machine, as in the tests, stay apart)."""
    return str(Path(base) / f"node-{node_id[:12]}")


def probe(base: str | None, shared: str | None, commit: str, version: str, inputs: dict[str, str],
           artifacts: dict[str, dict], logits: dict[str, tuple[int, int]], flavor: str = "mainline") -> dict:
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
        tc = toolchain.find(flavor=flavor)
        backends = tuple(tc.backends)
        if tc.commit != commit:
            problems.append(f"{tc.title} {tc.commit} here, {commit} on the coordinator (job keys include it)")
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


def execute(spec: dict, root: str, inputs: dict[str, str], node: str, flavor: str = "mainline"):
    """On a node: one job, exactly as a local sweep runs it; Ray pins the GPU (CUDA_VISIBLE_DEVICES).

    A generator: its first item says the job began (until then Ray held it queued for resources), its
    second is the outcome."""
    import ray

    from orchestrator.tools import toolchain
    from orchestrator.workspace import Workspace

    t0 = time.monotonic()
    yield {"began": True}
    tc = toolchain.find(flavor=flavor)
    env = worker.WorkerEnv(tool=tc.exe, ws=Workspace(root), inputs={k: Path(v) for k, v in inputs.items()})
    gpus = ray.get_gpu_ids()
    where = f"{node[:8]}" + (f" gpu {','.join(map(str, gpus))}" if gpus else "")
    out = worker.run(jobspec.JobSpec(**spec), env, device=where)
    yield {**out.model_dump(), "node": ray.get_runtime_context().get_node_id(), "gpu_ids": list(map(str, gpus)),
           "task_s": time.monotonic() - t0}


# ---------------------------------------------------------------------------------------------


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
