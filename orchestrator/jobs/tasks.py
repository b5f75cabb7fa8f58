"""Task accuracy: llama-perplexity's HellaSwag, Winogrande and multiple-choice modes on every cell (weights
× K/V pair) and on the reference model, each task's result kept, so that a cell's answers are paired with the
reference's task by task (report/paired.py)."""

from __future__ import annotations

from itertools import product
from pathlib import Path

from orchestrator.jobs.kind import Kind, Params, Parts, PlanState, device_resources, model_ref
from orchestrator.jobs.spec import Judge, Ref, Threads
from orchestrator.plan.graph import Cell, Job, Plan, content_key
from orchestrator.tools import tasks as tt

REFERENCE = "reference"  # the weights column of the reference model's task rows


class TaskParams(Params):
    model: str
    cache_k: str
    cache_v: str
    task: str  # the recipe's task name


class Task(Kind):
    name, title, tool, priority, guess_s = "task", "task", "llama-perplexity", 4, 60.0
    params = TaskParams
    measures = True

    def plan(self, st: PlanState) -> None:
        r = st.inp.recipe
        for t in r.tasks:
            st.files[st.inp.task_files[t.name].sha256] = st.inp.task_files[t.name].path
            self._add(st, t, st.reference, "f16", "f16", REFERENCE)
            for w, (k, v) in product(r.weights, r.cache.expanded()):
                self._add(st, t, st.model_keys[w.label], k, v, w.label)

    def _add(self, st: PlanState, t, model: str, k: str, v: str, weights: str) -> None:
        inp, ev = st.inp, st.inp.recipe.evaluation
        tf = inp.task_files[t.name]
        key = content_key("task", model=model, cache_k=k, cache_v=v, file=tf.sha256, format=tf.format, tasks=t.tasks,
                          ctx=t.ctx, batch=ev.batch, ubatch=ev.ubatch, flash_attn=ev.flash_attn,
                          gpu_layers=ev.gpu_layers, threads=ev.threads, extra=ev.extra_args, toolchain=inp.toolchain)
        # a task row belongs to its cell (the first context's), whatever the KLD contexts
        st.add(Job(key, self.name, f"task {t.name} {weights} K={k} V={v}", st.deps(model),
                   TaskParams(model=model, cache_k=k, cache_v=v, task=t.name),
                   Cell(weights, k, v, ev.contexts[0])), once=False)

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: TaskParams = job.params
        r = plan.inputs.recipe
        ev, t = r.evaluation, next(t for t in r.tasks if t.name == p.task)
        tf = plan.inputs.task_files[p.task]
        argv = tt.argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.model), Ref(ref="input", key=tf.sha256),
                       tf.format, tasks=t.tasks, ctx=t.ctx, batch=ev.batch, ubatch=ev.ubatch, cache_k=p.cache_k,
                       cache_v=p.cache_v, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                       threads=ev.threads or threads.device, extra=ev.extra_args)
        res = device_resources(plan, upstream, p.model, p.cache_k, p.cache_v, t.ctx, ev, threads.device_hold)
        return Parts(argv, res, t.timeout_minutes, Judge(task=p.task, task_format=tf.format, tasks=t.tasks))

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert judge.task_format is not None, "set by parts()"
        return {"task": judge.task, **tt.judge(judge.task_format, res.rc, res.stdout, res.stderr, judge.tasks)}

    def failed_test(self, job: Job) -> str:
        return job.params.task

    def rows(self, result: dict) -> list[dict]:
        row = dict(result)
        return [{**row, "test": row.pop("task")}]


TASK = Task()
