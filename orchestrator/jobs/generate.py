"""What each cell says: llama-completion continues each of the recipe's prompts greedily on every cell and on
the reference, and llama-tokenize reads the continuation back, so the report can show where each cell parts
from the reference (tools/generate.py)."""

from __future__ import annotations

from itertools import product
from pathlib import Path

from orchestrator.jobs.kind import Kind, Params, Parts, PlanState, device_resources, model_ref
from orchestrator.jobs.spec import Judge, Ref, Threads
from orchestrator.jobs.tasks import REFERENCE
from orchestrator.plan.graph import Cell, Job, Plan, content_key
from orchestrator.tools import generate as tg


class GenerateParams(Params):
    model: str
    cache_k: str
    cache_v: str
    prompt: str  # the prompt's name


class Generate(Kind):
    name, title, tool, priority, guess_s = "generate", "generate", "llama-completion", 4, 15.0
    params = GenerateParams
    measures = True

    def plan(self, st: PlanState) -> None:
        r = st.inp.recipe
        for p in r.generate.prompts:
            self._add(st, p, st.reference, "f16", "f16", REFERENCE)
            for w, (k, v) in product(r.weights, r.cache.expanded()):
                self._add(st, p, st.model_keys[w.label], k, v, w.label)

    def _add(self, st: PlanState, p, model: str, k: str, v: str, weights: str) -> None:
        inp, g, ev = st.inp, st.inp.recipe.generate, st.inp.recipe.evaluation
        key = content_key("generate", model=model, cache_k=k, cache_v=v, prompt=p.text, tokens=g.tokens, ctx=g.ctx,
                          flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers, threads=ev.threads,
                          toolchain=inp.toolchain)
        st.add(Job(key, self.name, f"generate {p.name} {weights} K={k} V={v}", st.deps(model),
                   GenerateParams(model=model, cache_k=k, cache_v=v, prompt=p.name),
                   Cell(weights, k, v, ev.contexts[0])), once=False)

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: GenerateParams = job.params
        r = plan.inputs.recipe
        g, ev = r.generate, r.evaluation
        prompt = next(x for x in g.prompts if x.name == p.prompt)
        model = model_ref(plan, p.model)
        argv = tg.argv(Ref(ref="tool", key=self.tool), model, prompt.text, tokens=g.tokens, ctx=g.ctx,
                       cache_k=p.cache_k, cache_v=p.cache_v, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                       threads=ev.threads or threads.device, extra=[])
        then = tg.tokenize_argv(Ref(ref="tool", key="llama-tokenize"), model, Ref(ref="stdout"))
        res = device_resources(plan, upstream, p.model, p.cache_k, p.cache_v, g.ctx, ev, threads.device_hold)
        return Parts(argv, res, g.timeout_minutes, Judge(task=p.prompt, tasks=g.tokens), then=then)

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert judge.tasks is not None, "set by parts()"
        return {"prompt": judge.task, **tg.judge(res.rc, res.stdout, res.stderr, res.then, judge.tasks)}

    def failed_test(self, job: Job) -> str:
        return job.params.prompt

    def rows(self, result: dict) -> list[dict]:
        row = dict(result)
        return [{**row, "test": row.pop("prompt")}]


GENERATE = Generate()
