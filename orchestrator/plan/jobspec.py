"""A job as data: what to run, on what, how to judge it, and what it needs. Pure: no I/O.

A spec names its tool (not a path) and refers to its inputs and outputs by key, so it can be
shipped as JSON to the machine that runs it; the worker there resolves the references against its
own toolchain and workspace (`worker.py`). Specs are built when a job becomes ready, because some
judges need an upstream result (a KLD run must report the reference run's PPL).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.plan import memory
from orchestrator.plan.graph import Job, Plan
from orchestrator.tools import bench as tb, imatrix as ti, perplexity as tp, quantize as tq

TOOLS = {"reference": "llama-quantize", "quantize": "llama-quantize", "imatrix": "llama-imatrix",
         "base": "llama-perplexity", "kld": "llama-perplexity", "bench": "llama-bench"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ref(Strict):
    """A path known only where the job runs: an input (the source model, a corpus, a given imatrix
    file) by its content key, an artifact of another job by its key, this job's own output, or the tool."""

    ref: Literal["tool", "input", "model", "imatrix", "logits", "output"]
    key: str = ""
    label: str = ""  # a model artifact's file name begins with its type (reference-F16, Q4_K_M)


Arg = Union[str, Ref]


class Judge(Strict):
    """What the output must show for the job to count as done."""

    n_vocab: int | None = None
    ctx: int | None = None
    base_ppl: float | None = None       # a KLD run must report the reference run's PPL
    n_tests: int | None = None          # a bench must produce every test it was asked for
    overrides: list[str] = Field(default_factory=list)  # tensor_types patterns: llama-quantize must apply one


class Expect(Strict):
    """An artifact a job reads, as it was when it was made: the worker checks it before the tool runs."""

    ref: Ref
    bytes: int
    sha256: str


class Resources(Strict):
    """What a job holds while it runs. `device_bytes` is reserved on one device (ledger);
    `exclusive` keeps every other job off that device; `quiet_host` keeps CPU-heavy jobs off the box."""

    where: Literal["cpu", "device"]
    threads: int = 1        # host threads held (0: a job on a GPU that leaves the CPU to others)
    device_bytes: int = 0
    exclusive: bool = False
    quiet_host: bool = False


class JobSpec(Strict):
    key: str
    kind: Literal["reference", "imatrix", "quantize", "base", "kld", "bench"]
    label: str
    deps: tuple[str, ...] = ()
    tool: str
    argv: list[Arg]
    output: Ref | None = None
    judge: Judge = Field(default_factory=Judge)
    timeout_s: float
    resources: Resources
    expect: list[Expect] = Field(default_factory=list)


class Outcome(Strict):
    """What a worker reports back; only the coordinator writes it to the store."""

    key: str
    ok: bool
    result: dict = Field(default_factory=dict)
    artifact: str = ""          # the output's path where the job ran
    reason: str = ""
    stderr_tail: str = ""
    wall_s: float = 0.0
    argv: str = ""
    log_dir: str = ""
    out_of_memory: bool = False
    device: str = ""
    machine: bool = False       # failed because of the machine (disk, signal, memory, a damaged input):
                                # the next plain `run` tries it again
    bad_input: str = ""         # the key of an artifact found damaged before the tool ran


# ---------------------------------------------------------------------------------------------
# building specs from a plan's jobs


def model_ref(plan: Plan, key: str) -> Ref:
    if key.startswith("source-"):
        return Ref(ref="input", key=key)
    return Ref(ref="model", key=key, label=plan.artifact_stems.get(key, ""))


@dataclass(frozen=True)
class Threads:
    """How the host's cores are shared where the recipe sets no threads: the -t of CPU jobs (quantize)
    and of device jobs (None: the tool's default), and the host threads each is accounted for."""

    cpu: int | None = None
    cpu_hold: int = 1
    device: int | None = None
    device_hold: int = 1


def output_ref(job: Job) -> Ref | None:
    """Where a job's artifact goes (by reference; the worker resolves it), or None for a measurement."""
    if job.kind in ("reference", "quantize"):
        return Ref(ref="model", key=job.key, label=job.params["stem"])
    return {"imatrix": Ref(ref="imatrix", key=job.key), "base": Ref(ref="logits", key=job.key)}.get(job.kind)


def _expect(plan: Plan, upstream: dict[str, dict], job: Job) -> list[Expect]:
    """The artifacts of other jobs this job reads, with the size and sha256 recorded when they were made
    (none for a result of an earlier version that did not record them)."""
    by_key = {j.key: j for j in plan.jobs}
    out = []
    for dep in job.deps:
        made = upstream.get(dep) or {}
        ref = output_ref(by_key[dep]) if dep in by_key else None
        if ref is not None and made.get("sha256") and made.get("file_bytes") is not None:
            out.append(Expect(ref=ref, bytes=made["file_bytes"], sha256=made["sha256"]))
    return out


def build(job: Job, plan: Plan, upstream: dict[str, dict], policy: Threads = Threads()) -> JobSpec:
    """The spec of `job`; `upstream` holds the results of the done jobs it depends on."""
    threads, hold, device_hold = policy.device, policy.cpu_hold, policy.device_hold
    r, p = plan.inputs.recipe, job.params
    ev, b, q = r.evaluation, r.bench, r.quantize
    tool = Ref(ref="tool", key=TOOLS[job.kind])
    judge = Judge()
    out = output_ref(job)
    if job.kind in ("reference", "quantize"):
        im = p.get("imatrix")
        imatrix = None if not im else Ref(ref="input", key=im) if im.startswith("imatrixfile-") else \
            Ref(ref="imatrix", key=im)
        argv = tq.argv(tool, model_ref(plan, p["input"]), Ref(ref="output"), p["type"], imatrix=imatrix,
                       tensor_types=p.get("tensor_types"), allow_requantize=p["allow_requantize"],
                       threads=q.threads or policy.cpu, extra=p.get("extra"))
        judge = Judge(overrides=list(p.get("tensor_types") or {}))
        timeout, res = q.timeout_minutes, Resources(where="cpu", threads=q.threads or hold)
    elif job.kind == "imatrix":
        argv = ti.argv(tool, model_ref(plan, p["model"]), Ref(ref="input", key=p["corpus_key"]), Ref(ref="output"),
                       ctx=p["ctx"], chunks=p["chunks"], gpu_layers=ev.gpu_layers, threads=ev.threads or threads)
        timeout, res = ev.timeout_minutes, _device(plan, upstream, p["model"], "f16", "f16", p["ctx"], ev, device_hold)
    elif job.kind == "base":
        argv = tp.base_argv(tool, model_ref(plan, p["model"]), Ref(ref="input", key=plan.inputs.corpus.sha256),
                            Ref(ref="output"), ctx=p["ctx"], chunks=p["chunks"], batch=ev.batch, ubatch=ev.ubatch,
                            flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers, threads=ev.threads or threads,
                            extra=ev.extra_args)
        judge = Judge(n_vocab=p["n_vocab"], ctx=p["ctx"])
        timeout = ev.timeout_minutes
        res = _device(plan, upstream, p["model"], "f16", "f16", p["ctx"], ev, device_hold)
    elif job.kind == "kld":
        argv = tp.kld_argv(tool, model_ref(plan, p["model"]), Ref(ref="logits", key=p["base"]), ctx=p["ctx"],
                           batch=ev.batch, ubatch=ev.ubatch, cache_k=p["cache_k"], cache_v=p["cache_v"],
                           flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers, threads=ev.threads or threads,
                           extra=ev.extra_args)
        judge = Judge(base_ppl=upstream.get(p["base"], {}).get("ppl_base"))  # None only in a preview
        timeout, res = ev.timeout_minutes, _device(plan, upstream, p["model"], p["cache_k"], p["cache_v"],
                                                   p["ctx"], ev, device_hold)
    else:
        argv = tb.argv(tool, model_ref(plan, p["model"]), cache_k=p["cache_k"], cache_v=p["cache_v"],
                       prompt=b.prompt, gen=b.gen, depth=b.depth, repetitions=b.repetitions,
                       flash_attn=b.flash_attn, gpu_layers=b.gpu_layers, threads=b.threads,
                       batch=b.batch, ubatch=b.ubatch, extra=b.extra_args)
        judge = Judge(n_tests=tb.expected_tests(b.prompt, b.gen, b.depth))
        timeout = b.timeout_minutes
        res = Resources(where="device", threads=b.threads or device_hold, exclusive=True,
                        quiet_host=b.isolation == "host")
    return JobSpec(key=job.key, kind=job.kind, label=job.label, deps=job.deps, tool=TOOLS[job.kind], argv=argv,
                   output=out, judge=judge, timeout_s=timeout * 60, resources=res,
                   expect=_expect(plan, upstream, job))


def _device(plan: Plan, upstream: dict, model_key: str, type_k: str, type_v: str, ctx: int, ev,
            hold: int) -> Resources:
    """A quality job's device memory: the model's weights + K/V + compute, from the memory model. An
    architecture the model cannot size gets the device alone (exclusive) rather than a guess."""
    need = device_bytes(plan, upstream, model_key, type_k, type_v, ctx, ev.ubatch)
    return Resources(where="device", threads=ev.threads or hold, device_bytes=need or 0,
                     exclusive=need is None)


def device_bytes(plan: Plan, upstream: dict, model_key: str, type_k: str, type_v: str, ctx: int,
                 ubatch: int) -> int | None:
    info = plan.inputs.source_info
    try:
        arch = memory.Architecture.from_hparams(info.architecture, info.hparams, info.n_vocab)
    except memory.MemoryModelError:
        return None
    made = upstream.get(model_key, {})
    weights = int(made["quant_mib"] * 2**20) if made.get("quant_mib") else info.tensor_bytes
    return memory.footprint(arch, weights, type_k, type_v, ctx, ubatch).total
