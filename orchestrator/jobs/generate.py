"""What each cell says: llama-completion continues each of the recipe's prompts greedily on every cell and on
the reference, and llama-tokenize reads the continuation back, so the report can show where each cell parts
from the reference (tools/generate.py)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs.kind import ItemParams, Parts, PerCellAndReference, PlanState, device_resources, model_ref
from orchestrator.jobs.spec import Judge, Ref, Threads
from orchestrator.plan.graph import Job, Plan, content_key
from orchestrator.tools import generate as tg


class Generate(PerCellAndReference):
    name, title, tool, priority, guess_s = "generate", "generate", "llama-completion", 4, 15.0

    def items(self, st: PlanState) -> list:
        return list(st.inp.recipe.generate.prompts)

    def job_key(self, st: PlanState, p, model: str, k: str, v: str) -> str:
        inp, g, ev = st.inp, st.inp.recipe.generate, st.inp.recipe.evaluation
        return content_key("generate", model=model, cache_k=k, cache_v=v, prompt=p.text, tokens=g.tokens, ctx=g.ctx,
                           flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers, threads=ev.threads,
                           toolchain=inp.toolchain)

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: ItemParams = job.params
        r = plan.inputs.recipe
        g, ev = r.generate, r.evaluation
        prompt = next(x for x in g.prompts if x.name == p.item)
        model = model_ref(plan, p.model)
        argv = tg.argv(Ref(ref="tool", key=self.tool), model, prompt.text, tokens=g.tokens, ctx=g.ctx,
                       cache_k=p.cache_k, cache_v=p.cache_v, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                       threads=ev.threads or threads.device, extra=[])
        then = tg.tokenize_argv(Ref(ref="tool", key="llama-tokenize"), model, Ref(ref="stdout"))
        res = device_resources(plan, upstream, p.model, p.cache_k, p.cache_v, g.ctx, ev, threads.device_hold)
        return Parts(argv, res, g.timeout_minutes, Judge(task=p.item, tasks=g.tokens), then=then)

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert judge.tasks is not None, "set by parts()"
        return {"test": judge.task, **tg.judge(res.rc, res.stdout, res.stderr, res.then, judge.tasks)}


GENERATE = Generate()
