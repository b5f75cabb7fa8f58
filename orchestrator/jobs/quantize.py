"""The models: the reference (the source converted to a float or Q8_0 type) and each weights quant,
made by llama-quantize."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import ToolFailed
from orchestrator.jobs.kind import Kind, Params, Parts, PlanState, model_ref
from orchestrator.jobs.spec import Judge, Ref, Resources, Threads
from orchestrator.plan.graph import Job, Plan, content_key, model_bytes
from orchestrator.tools import llama_types as lt, quantize as tq


class ModelParams(Params):
    input: str                          # the model it is made from (a job's key, or the source)
    type: str
    allow_requantize: bool
    stem: str                           # its file name's stem: the type, for a reader of the folder
    out_bytes: int                      # its size estimated from the type (the disk check)
    imatrix: str | None = None          # an imatrix job's key, or a given file's input key
    imatrix_file: str | None = None     # the given file (then `imatrix` is its input key)
    tensor_types: dict[str, str] = {}
    extra: list[str] = []

    def disk_bytes(self) -> int:
        return self.out_bytes


class _Model(Kind):
    tool = "llama-quantize"
    params = ModelParams
    makes = "model"

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: ModelParams = job.params
        q = plan.inputs.recipe.quantize
        imatrix = None if not p.imatrix else Ref(ref="input" if p.imatrix_file else "imatrix", key=p.imatrix)
        argv = tq.argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.input), Ref(ref="output"), p.type,
                       imatrix=imatrix, tensor_types=p.tensor_types or None, allow_requantize=p.allow_requantize,
                       threads=q.threads or threads.cpu, extra=p.extra or None)
        return Parts(argv, Resources(where="cpu", threads=q.threads or threads.cpu_hold), q.timeout_minutes,
                     Judge(overrides=list(p.tensor_types)))

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert out is not None, "a model job writes its model"
        result = tq.judge(res.rc, res.stdout, res.stderr, out)
        if judge.overrides and not result.get("overrides_applied"):
            # llama-quantize ignores a pattern that matches nothing (or an F16/BF16 target) silently
            raise ToolFailed(f"tensor_types {judge.overrides} matched no tensor: check the patterns (regex searched "
                             "in lower-cased names such as blk.0.ffn_down.weight)", stderr_tail=res.tail())
        return result


class Reference(_Model):
    name, title, priority, guess_s = "reference", "reference model", 0, 30.0

    def plan(self, st: PlanState) -> None:
        r, inp = st.inp.recipe, st.inp
        if r.reference.type == "source":
            st.reference = st.source
        else:
            st.reference = content_key("reference", input=st.source, type=r.reference.type, toolchain=inp.toolchain)
            st.add(Job(st.reference, self.name, f"reference model {r.reference.type}", (), ModelParams(
                input=st.source, type=r.reference.type, allow_requantize=inp.source_info.is_quantized,
                stem=f"reference-{r.reference.type}", out_bytes=model_bytes(inp, r.reference.type))))
        # the weights are quantized from the reference when it is a float type (more precise than the source)
        if r.reference.type in lt.FLOAT_TYPES:
            st.quant_input, st.input_quantized = st.reference, False
        else:
            st.quant_input, st.input_quantized = st.source, inp.source_info.is_quantized


class Quantize(_Model):
    name, title, priority, guess_s = "quantize", "quantize", 3, 60.0

    def plan(self, st: PlanState) -> None:
        inp = st.inp
        for w in inp.recipe.weights:
            if w.type == "source":
                st.model_keys[w.label] = st.source
                continue
            im = st.imatrix_keys.get(w.label)
            key = content_key("quantize", input=st.quant_input, type=w.type, imatrix=im,
                              tensor_types=w.tensor_types, extra=w.extra_args, toolchain=inp.toolchain)
            st.model_keys[w.label] = key
            given = w.imatrix is not None and w.imatrix.file is not None
            st.add(Job(key, self.name, f"quantize {w.label}", st.deps(st.quant_input, im), ModelParams(
                input=st.quant_input, type=w.type, imatrix=im,
                imatrix_file=str(inp.imatrix_inputs[w.label][0]) if given else None,
                tensor_types=dict(w.tensor_types), extra=list(w.extra_args), allow_requantize=st.input_quantized,
                stem=w.type, out_bytes=model_bytes(inp, w.type))))
            if given and im is not None:
                st.files[im] = inp.imatrix_inputs[w.label][0]


REFERENCE, QUANTIZE = Reference(), Quantize()
