"""What a job kind is: one typed definition holding everything quantsweep knows about that kind of job.

A kind plans its jobs from the recipe (with their content keys and typed parameters), builds a job's spec
(tool, argv, judge, resources, timeout), judges its tool's output into a result, and says how that result
becomes store rows. The coordinator, scheduler, worker and reports ask the kind; none of them names one.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from orchestrator.jobs.spec import Arg, Expect, JobSpec, Judge, Ref, Resources, Threads
from orchestrator.plan import memory
from orchestrator.plan.graph import Cell, Job, Plan, PlanInputs

if TYPE_CHECKING:
    from orchestrator.procs import ProcResult


class Params(BaseModel):
    """A kind's parameters: typed, frozen, no field the kind does not name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def disk_bytes(self) -> int:
        """What the job writes to the workspace (the pre-run disk check)."""
        return 0


@dataclass
class Parts:
    """The kind-specific part of a spec."""

    argv: list[Arg]
    resources: Resources
    timeout_min: float
    judge: Judge = field(default_factory=Judge)
    feed: list[Arg] | None = None  # a tool run beside it that feeds it through a pipe (a streamed reference)
    then: list[Arg] | None = None  # a tool run after it, reading its stdout


@dataclass
class PlanState:
    """What the kinds plan into, in registry order: each kind adds its jobs and leaves what later kinds
    read (the model of each weights entry, the reference logits of each context)."""

    inp: PlanInputs
    source: str                                  # the source model's input key
    cells: list[Cell]
    jobs: list[Job] = field(default_factory=list)
    reference: str = ""                          # the reference model: a job's key, or the source
    quant_input: str = ""                        # what the weights quants are made from
    input_quantized: bool = False
    imatrix_keys: dict[str, str] = field(default_factory=dict)    # weights label -> its imatrix (job or file)
    model_keys: dict[str, str] = field(default_factory=dict)      # weights label -> its model (job or source)
    base_keys: dict[int, str] = field(default_factory=dict)       # ctx -> the reference-logits job
    served: dict[int, Any] = field(default_factory=dict)          # ctx -> a larger base on hand, served in part
    streamed: dict[int, dict] = field(default_factory=dict)       # ctx -> its reference streamed: why, chunks
    files: dict[str, object] = field(default_factory=dict)        # input key -> the file it names

    def add(self, job: Job, *, once: bool = True) -> None:
        """A job; `once`: not again when a job of that key is planned (weights entries of equal content)."""
        if not (once and any(j.key == job.key for j in self.jobs)):
            self.jobs.append(job)

    def deps(self, *keys: str | None) -> tuple[str, ...]:
        """The keys among `keys` that are jobs planned so far (the source and given files are inputs)."""
        made = {j.key for j in self.jobs}
        return tuple(k for k in keys if k and k in made)


class Kind:
    """One kind of job. Subclasses set the class attributes and the methods their jobs need."""

    name: ClassVar[str]
    title: ClassVar[str]             # what `plan`, `run` and every message call it
    tool: ClassVar[str]              # the llama.cpp tool it runs
    params: ClassVar[type[Params]]
    priority: ClassVar[int]          # among ready jobs, lower starts first
    guess_s: ClassVar[float]         # its seconds before the store has timed one: a guess, and `plan` says so
    makes: ClassVar[Literal["model", "imatrix", "logits"] | None] = None  # the artifact it writes
    measures: ClassVar[bool] = False     # its results are a cell's rows (KLD, speed)
    per_context: ClassVar[bool] = False  # its rows carry the cell's context
    speed: ClassVar[bool] = False        # measures speed: nothing CPU-heavy beside it where asked

    def plan(self, st: PlanState) -> None:
        """Add this kind's jobs for the recipe."""
        raise NotImplementedError

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        """Argv, resources, timeout and judge of `job`; `upstream`: results of the jobs it reads."""
        raise NotImplementedError

    def judge(self, judge: Judge, res: ProcResult, out) -> dict:
        """The result, from the tool's output (never from its exit code alone); ToolFailed if none."""
        raise NotImplementedError

    def next_run(self, spec: JobSpec, result: dict) -> JobSpec | None:
        """A job measured in several runs (chunks: auto): the spec of the next run, given this one's result;
        None: done."""
        return None

    def merge(self, runs: list[dict]) -> dict:
        """The job's result from the results of its runs, in order."""
        return runs[-1]

    def rows(self, result: dict) -> list[dict]:
        """A measurement's result as store rows (the cell's columns are added by the caller)."""
        return [{**result, "test": ""}]

    def failed_test(self, job: Job) -> str:
        """The `test` of a failed job's row (a kind with several jobs per cell names which one failed)."""
        return ""

    def row_extra(self, job: Job, recorded) -> dict:
        """Columns a row takes from other jobs' records (`recorded(key)` -> the store's record or None)."""
        return {}

    def host_bytes(self, job: Job, plan: Plan, upstream: dict[str, dict], on_host: bool) -> int:
        """What the job's tool holds in this machine's memory (the pre-flight); `on_host`: its model runs on
        the CPU. 0: small beside the machine (a quantization streams its tensors)."""
        return 0

    def feed_host_bytes(self, job: Job, plan: Plan, upstream: dict[str, dict], on_host: bool) -> int:
        """Of host_bytes, what the run feeding it holds (a streamed reference): a gang holds it once."""
        return 0

    def output_ref(self, job: Job) -> Ref | None:
        if self.makes == "model":
            return Ref(ref="model", key=job.key, label=job.params.stem)
        return Ref(ref=self.makes, key=job.key) if self.makes else None


# -- helpers the kinds share ------------------------------------------------------------------------


def model_ref(plan: Plan, key: str) -> Ref:
    """A model a job reads: an artifact of the plan (by its key and file stem), else an input file."""
    stem = plan.artifact_stems.get(key)
    return Ref(ref="model", key=key, label=stem) if stem is not None else Ref(ref="input", key=key)


def device_resources(plan: Plan, upstream: dict, model_key: str, type_k: str, type_v: str, ctx: int, ev,
                     hold: int) -> Resources:
    """A quality job's device memory: the model's weights + K/V + compute, from the memory model. An
    architecture the model cannot size gets the device alone (exclusive) rather than a guess."""
    need = device_bytes(plan, upstream, model_key, type_k, type_v, ctx, ev.ubatch)
    return Resources(where="device", threads=ev.threads or hold, device_bytes=need or 0, exclusive=need is None)


def device_bytes(plan: Plan, upstream: dict, model_key: str, type_k: str, type_v: str, ctx: int,
                 ubatch: int) -> int | None:
    fp = model_footprint(plan, upstream, model_key, type_k, type_v, ctx, ubatch)
    return fp.total if fp is not None else None


def model_footprint(plan: Plan, upstream: dict, model_key: str, type_k: str, type_v: str, ctx: int,
                    ubatch: int) -> memory.Footprint | None:
    """A model's weights, K/V and compute at ctx (None: an architecture the memory model cannot size).
    Its weights as made, else as planned (from its type), else the source's."""
    arch = architecture(plan)
    if arch is None:
        return None
    made = upstream.get(model_key, {})
    planned = next((j.params.disk_bytes() for j in plan.jobs if j.key == model_key), None)
    weights = (int(made["quant_mib"] * 2**20) if made.get("quant_mib")
               else planned or plan.inputs.source_info.tensor_bytes)
    return memory.footprint(arch, weights, type_k, type_v, ctx, ubatch)


def architecture(plan: Plan) -> memory.Architecture | None:
    info = plan.inputs.source_info
    try:
        return memory.Architecture.from_hparams(info.architecture, info.hparams, info.n_vocab)
    except memory.MemoryModelError:
        return None


def expectations(plan: Plan, upstream: dict[str, dict], job: Job, output_ref) -> list[Expect]:
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


class ItemParams(Params):
    """A job of a PerCellAndReference kind: the model, its K/V pair, and the recipe's item (its name)."""

    model: str
    cache_k: str
    cache_v: str
    item: str


class PerCellAndReference(Kind):
    """A kind with one job per item of the recipe (a task set, a prompt), for the reference model (f16 cache)
    and for every cell: its rows' `test` is the item's name (`Params.item`), and they are paired with the
    reference's rows of that item in the report. Subclasses name the items and each job's key parts."""

    params: ClassVar[type[ItemParams]] = ItemParams
    measures = True
    REFERENCE = "reference"  # the weights column of the reference model's rows

    def items(self, st: PlanState) -> list:
        raise NotImplementedError

    def job_key(self, st: PlanState, item, model: str, k: str, v: str) -> str:
        raise NotImplementedError

    def plan(self, st: PlanState) -> None:
        r = st.inp.recipe
        for item in self.items(st):
            self._add(st, item, st.reference, "f16", "f16", self.REFERENCE)
            for w, (k, v) in product(r.weights, r.cache.expanded()):
                self._add(st, item, st.model_keys[w.label], k, v, w.label)

    def _add(self, st: PlanState, item, model: str, k: str, v: str, weights: str) -> None:
        # a row belongs to its cell (the first context's), whatever the KLD contexts
        st.add(Job(self.job_key(st, item, model, k, v), self.name, f"{self.name} {item.name} {weights} K={k} V={v}",
                   st.deps(model), self.params(model=model, cache_k=k, cache_v=v, item=item.name),
                   Cell(weights, k, v, st.inp.recipe.evaluation.contexts[0])), once=False)

    def failed_test(self, job: Job) -> str:
        return job.params.item

    def rows(self, result: dict) -> list[dict]:
        return [dict(result)]  # its judge names the item as the row's `test`
