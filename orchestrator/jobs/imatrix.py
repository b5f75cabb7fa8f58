"""Importance matrices: llama-imatrix over a calibration corpus, for the weights entries that ask for one
(a given file is an input, not a job)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs.kind import Kind, Params, Parts, PlanState, device_resources, model_ref
from orchestrator.jobs.spec import Judge, Ref, Threads
from orchestrator.plan.graph import Job, Plan, content_key, imatrix_file_key
from orchestrator.tools import imatrix as ti


class ImatrixParams(Params):
    model: str
    corpus_key: str
    ctx: int
    chunks: int | None
    out_bytes: int

    def disk_bytes(self) -> int:
        return self.out_bytes


class Imatrix(Kind):
    name, title, tool, priority, guess_s = "imatrix", "imatrix", "llama-imatrix", 2, 120.0
    params = ImatrixParams
    makes = "imatrix"

    def plan(self, st: PlanState) -> None:
        inp = st.inp
        for w in inp.recipe.weights:
            if w.imatrix is None or w.type == "source":
                continue
            im = inp.imatrix_inputs[w.label]
            if w.imatrix.file is not None:  # a given file: an input
                st.imatrix_keys[w.label] = imatrix_file_key(im[1])
                continue
            key = content_key("imatrix", model=st.quant_input, corpus=im.sha256, ctx=w.imatrix.ctx,
                              chunks=w.imatrix.chunks, toolchain=inp.toolchain)
            st.imatrix_keys[w.label] = key
            st.files[im.sha256] = im.path
            st.add(Job(key, self.name, f"imatrix {im.label}", st.deps(st.quant_input), ImatrixParams(
                model=st.quant_input, corpus_key=im.sha256, ctx=w.imatrix.ctx, chunks=w.imatrix.chunks,
                out_bytes=inp.source_info.n_params // 64)))  # ≈ 4 bytes a column of each matrix

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: ImatrixParams = job.params
        ev = plan.inputs.recipe.evaluation
        argv = ti.argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.model), Ref(ref="input", key=p.corpus_key),
                       Ref(ref="output"), ctx=p.ctx, chunks=p.chunks, gpu_layers=ev.gpu_layers,
                       threads=ev.threads or threads.device)
        return Parts(argv, device_resources(plan, upstream, p.model, "f16", "f16", p.ctx, ev, threads.device_hold),
                     ev.timeout_minutes)

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert out is not None, "an imatrix job writes its matrix"
        return ti.judge(res.rc, res.stdout, res.stderr, out)


IMATRIX = Imatrix()
