"""Speed: llama-bench for each weights quant and K/V pair, with the device (and, where asked, the host)
to itself."""

from __future__ import annotations

from itertools import product
from pathlib import Path

from orchestrator.jobs.kind import Kind, Params, Parts, PlanState, model_ref
from orchestrator.jobs.spec import Judge, Ref, Resources, Threads
from orchestrator.plan.graph import Cell, Job, Plan, content_key
from orchestrator.tools import bench as tb


class BenchParams(Params):
    model: str
    cache_k: str
    cache_v: str


class Bench(Kind):
    name, title, tool, priority, guess_s = "bench", "bench", "llama-bench", 5, 60.0
    params = BenchParams
    measures = speed = True

    def plan(self, st: PlanState) -> None:
        inp = st.inp
        b, r = inp.recipe.bench, inp.recipe
        if not b.enabled:
            return
        for w, (k, v) in product(r.weights, r.cache.expanded()):
            mk = st.model_keys[w.label]
            key = content_key("bench", model=mk, cache_k=k, cache_v=v, prompt=b.prompt, gen=b.gen, depth=b.depth,
                              repetitions=b.repetitions, flash_attn=b.flash_attn, gpu_layers=b.gpu_layers,
                              threads=b.threads, batch=b.batch, ubatch=b.ubatch, extra=b.extra_args,
                              toolchain=inp.toolchain, host=inp.host)
            st.add(Job(key, self.name, f"bench {w.label} K={k} V={v}", st.deps(mk),
                       BenchParams(model=mk, cache_k=k, cache_v=v), Cell(w.label, k, v, r.evaluation.contexts[0])),
                   once=False)

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: BenchParams = job.params
        b = plan.inputs.recipe.bench
        argv = tb.argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.model), cache_k=p.cache_k, cache_v=p.cache_v,
                       prompt=b.prompt, gen=b.gen, depth=b.depth, repetitions=b.repetitions, flash_attn=b.flash_attn,
                       gpu_layers=b.gpu_layers, threads=b.threads, batch=b.batch, ubatch=b.ubatch, extra=b.extra_args,
                       flavor=plan.inputs.recipe.toolchain)
        res = Resources(where="device", threads=b.threads or threads.device_hold, exclusive=True,
                        quiet_host=b.isolation == "host")
        return Parts(argv, res, b.timeout_minutes, Judge(n_tests=tb.expected_tests(b.prompt, b.gen, b.depth)))

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert judge.n_tests is not None, "set by parts()"
        return {"tests": tb.judge(res.rc, res.stdout, res.stderr, judge.n_tests)}

    def rows(self, result: dict) -> list[dict]:
        return list(result["tests"])


BENCH = Bench()
