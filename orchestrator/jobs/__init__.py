"""The job kinds, registered in one place. A kind is one typed definition (`kind.Kind`): its parameters,
how it is planned, its tool, argv, judge, resources, priority and rows. Adding a kind is its module, its
line below and its tests.

The order below is the plan's order: a kind only reads what kinds before it make.
"""

from __future__ import annotations

from orchestrator.jobs.bench import BENCH
from orchestrator.jobs.generate import GENERATE
from orchestrator.jobs.imatrix import IMATRIX
from orchestrator.jobs.kind import Kind, expectations
from orchestrator.jobs.perplexity import BASE, KLD
from orchestrator.jobs.quantize import QUANTIZE, REFERENCE
from orchestrator.jobs.spec import JobSpec, Ref, Threads
from orchestrator.jobs.tasks import TASK
from orchestrator.plan.graph import Job, Plan

KINDS: dict[str, Kind] = {k.name: k for k in (REFERENCE, IMATRIX, QUANTIZE, BASE, KLD, TASK, GENERATE, BENCH)}


def kind(name: str) -> Kind:
    return KINDS[name]


def makes_artifact(name: str) -> bool:
    """Whether jobs of this kind write an artifact others read (a model, an imatrix, reference logits)."""
    return KINDS[name].makes is not None


def output_ref(job: Job) -> Ref | None:
    """Where a job's artifact goes (by reference; the worker resolves it), or None for a measurement."""
    return KINDS[job.kind].output_ref(job)


def build_spec(job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads = Threads()) -> JobSpec:
    """The spec of `job`; `upstream` holds the results of the done jobs it reads."""
    k = KINDS[job.kind]
    parts = k.parts(job, plan, upstream, threads)
    return JobSpec(key=job.key, kind=job.kind, label=job.label, deps=job.deps, tool=k.tool, argv=parts.argv,
                   output=k.output_ref(job), judge=parts.judge, timeout_s=parts.timeout_min * 60,
                   resources=parts.resources, expect=expectations(plan, upstream, job, output_ref), feed=parts.feed,
                   then=parts.then)


def host_need(plan: Plan, keys, upstream: dict[str, dict], on_host: bool) -> tuple[int, Job | None]:
    """The most host memory one of the jobs `keys` holds, and that job (0, None: none holds much)."""
    by_key = {j.key: j for j in plan.jobs}
    need = [(KINDS[by_key[k].kind].host_bytes(by_key[k], plan, upstream, on_host), by_key[k]) for k in keys]
    return max(need, key=lambda x: x[0], default=(0, None))
