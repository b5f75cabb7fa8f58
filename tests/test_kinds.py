"""A job kind is one typed definition registered in one place: a kind defined here, and registered, is
planned, prioritised, turned into a spec, judged and made into rows by the code that exists, untouched."""

import pytest
from pydantic import ValidationError

from orchestrator import jobs
from orchestrator.execute import scheduler
from orchestrator.jobs.kind import Kind, Params, Parts, PlanState, model_ref
from orchestrator.jobs.spec import Judge, Ref, Resources
from orchestrator.plan.graph import Cell, Job, content_key
from orchestrator.procs import ProcResult

from .helpers import INFO, box, build, spec


class SketchParams(Params):
    model: str
    prompt: str
    tokens: int


class Sketch(Kind):
    """A kind the registry does not have (a short continuation of one prompt by each weights quant): one job
    per weights entry, reading its model, on a device, after the KLD jobs."""

    name, title, tool, priority, guess_s = "sketch", "sketch", "llama-completion", 6, 20.0
    params = SketchParams
    measures = True

    def plan(self, st: PlanState) -> None:
        for w in st.inp.recipe.weights:
            mk = st.model_keys[w.label]
            key = content_key("sketch", model=mk, prompt="def f(", tokens=16, toolchain=st.inp.toolchain)
            st.add(Job(key, self.name, f"sketch {w.label}", st.deps(mk),
                       SketchParams(model=mk, prompt="def f(", tokens=16), Cell(w.label, "f16", "f16", 256)),
                   once=False)

    def parts(self, job, plan, upstream, threads) -> Parts:
        p = job.params
        argv = [Ref(ref="tool", key=self.tool), "-m", model_ref(plan, p.model), "-p", p.prompt, "-n", str(p.tokens)]
        return Parts(argv, Resources(where="device", device_bytes=2**30), 5)

    def judge(self, judge: Judge, res, out) -> dict:
        return {"text": res.stdout.strip(), "tokens": len(res.stdout.split())}


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(jobs.KINDS, "sketch", Sketch())


def test_a_registered_kind_is_planned_after_what_it_reads(tmp_path, registered):
    p = build(tmp_path)
    gen = p.of_kind("sketch")
    assert [j.label for j in gen] == ["sketch Q8_0", "sketch Q4_K_M"]
    assert all(j.deps == (p.model_keys[j.cell.weights],) for j in gen)
    order = [list(jobs.KINDS).index(j.kind) for j in p.jobs]
    assert order == sorted(order) and p.jobs[-1].kind == "sketch"
    assert {j.key for j in gen} <= {j.key for j in p.measured}  # its results become the cells' rows


def test_its_spec_judge_priority_and_rows_come_from_its_definition(tmp_path, registered):
    p = build(tmp_path)
    job = p.of_kind("sketch")[0]
    s = jobs.build_spec(job, p, {})
    assert s.tool == "llama-completion" and s.timeout_s == 300 and s.resources.device_bytes == 2**30
    assert s.argv[2] == Ref(ref="model", key=job.params.model, label="Q8_0") and s.output is None
    assert not jobs.makes_artifact("sketch") and jobs.output_ref(job) is None
    res = ProcResult(argv=(), rc=0, stdout="x = 1\n", stderr="", wall_s=0.1, timed_out=False)
    assert jobs.kind("sketch").judge(s.judge, res, None) == {"text": "x = 1", "tokens": 3}
    assert jobs.kind("sketch").rows({"text": "x = 1"}) == [{"text": "x = 1", "test": ""}]
    # the scheduler starts ready jobs by the kinds' priorities: a KLD before a generation
    kld = spec("kld-1", gib=1.0)
    started = scheduler.decide([s, kld], [], box(1))
    assert [x.spec.kind for x in started] == ["kld", "sketch"]


def test_its_parameters_are_typed_and_closed():
    with pytest.raises(ValidationError):
        SketchParams(model="m", prompt="p", tokens="many")
    with pytest.raises(ValidationError):
        SketchParams(model="m", prompt="p", tokens=4, temperature=0.7)
    assert INFO.n_vocab == 49152  # the plan's model, as the helpers make it
