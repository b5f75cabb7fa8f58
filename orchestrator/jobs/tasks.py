"""Task accuracy: llama-perplexity's HellaSwag, Winogrande and multiple-choice modes on every cell (weights
× K/V pair) and on the reference model, each task's result kept, so that a cell's answers are paired with the
reference's task by task (report/paired.py)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs.kind import ItemParams, Parts, PerCellAndReference, PlanState, device_resources, model_ref
from orchestrator.jobs.spec import Judge, Ref, Threads
from orchestrator.plan.graph import Job, Plan, content_key
from orchestrator.tools import tasks as tt


class Task(PerCellAndReference):
    name, title, tool, priority, guess_s = "task", "task", "llama-perplexity", 4, 60.0

    def items(self, st: PlanState) -> list:
        for t in st.inp.recipe.tasks:
            st.files[st.inp.task_files[t.name].sha256] = st.inp.task_files[t.name].path
        return list(st.inp.recipe.tasks)

    def job_key(self, st: PlanState, t, model: str, k: str, v: str) -> str:
        inp, ev = st.inp, st.inp.recipe.evaluation
        tf = inp.task_files[t.name]
        return content_key("task", model=model, cache_k=k, cache_v=v, file=tf.sha256, format=tf.format,
                           tasks=t.tasks, ctx=t.ctx, batch=ev.batch, ubatch=ev.ubatch, flash_attn=ev.flash_attn,
                           gpu_layers=ev.gpu_layers, threads=ev.threads, extra=ev.extra_args, toolchain=inp.toolchain)

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: ItemParams = job.params
        r = plan.inputs.recipe
        ev, t = r.evaluation, next(t for t in r.tasks if t.name == p.item)
        tf = plan.inputs.task_files[p.item]
        argv = tt.argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.model), Ref(ref="input", key=tf.sha256),
                       tf.format, tasks=t.tasks, ctx=t.ctx, batch=ev.batch, ubatch=ev.ubatch, cache_k=p.cache_k,
                       cache_v=p.cache_v, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                       threads=ev.threads or threads.device, extra=ev.extra_args)
        res = device_resources(plan, upstream, p.model, p.cache_k, p.cache_v, t.ctx, ev, threads.device_hold)
        return Parts(argv, res, t.timeout_minutes, Judge(task=p.item, task_format=tf.format, tasks=t.tasks))

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert judge.task_format is not None, "set by parts()"
        return {"test": judge.task, **tt.judge(judge.task_format, res.rc, res.stdout, res.stderr, judge.tasks)}


TASK = Task()
