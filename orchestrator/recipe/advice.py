"""Warnings at plan time: recipes that run but measure something other than what their author meant.
Nothing here stops a sweep; each line says what is odd and what to do instead."""

from __future__ import annotations

from pathlib import Path

from orchestrator.plan.graph import PlanInputs

# llama-quantize passes the importance matrix to these types' quantizers, which ignore it
IMATRIX_UNUSED = ("Q8_0", "F16", "BF16", "F32", "COPY", "TQ1_0", "TQ2_0", "MXFP4_MOE")
# formats for weights trained to take them (BitNet b1.58 and its kind); any other model is destroyed
TRAINED_FOR = {"TQ1_0": "ternary", "TQ2_0": "ternary", "Q1_0": "1-bit"}
TRAINED_ARCHITECTURES = ("bitnet",)


EVALUATED_TEXT = "calibrated on the evaluated text"


def imatrix_text(w, inp: PlanInputs) -> str | None:
    """How a weights entry's importance matrix was made, as the reports show it beside every cell built
    with it: its calibration text, context and chunks, and whether that text is the evaluated one (which
    flatters its KLD); or the file given, by name and hash."""
    if w.imatrix is None:
        return None
    im = inp.imatrix_inputs.get(w.label)
    if w.imatrix.file is not None:
        sha = im[1] if isinstance(im, tuple) else ""
        return f"file {Path(w.imatrix.file).name}" + (f" (sha256 {sha[:12]}…)" if sha else "")
    chunks = f"{w.imatrix.chunks} chunks" if w.imatrix.chunks else "all chunks"
    text = f"{w.imatrix.corpus.label}, ctx {w.imatrix.ctx}, {chunks}"
    return text + (f"; {EVALUATED_TEXT}" if _on_evaluated_text(w, inp) else "")


def _on_evaluated_text(w, inp: PlanInputs) -> bool:
    """The entry's importance matrix is computed from the very text its KLD is measured on."""
    im = inp.imatrix_inputs.get(w.label)
    return w.imatrix is not None and w.imatrix.corpus is not None and getattr(im, "sha256", None) == inp.corpus.sha256


def warnings(inp: PlanInputs) -> list[str]:
    r, info = inp.recipe, inp.source_info
    out = []
    experts = int(info.hparams.get("expert_count") or 0)
    for i, w in enumerate(r.weights):
        where = f"weights[{i}] ({w.label})"
        if w.imatrix is not None and w.type in IMATRIX_UNUSED:
            out.append(f"{where}: {w.type} uses no importance matrix; the imatrix changes nothing (drop it)")
        if _on_evaluated_text(w, inp):
            out.append(f"{where}: the imatrix is {EVALUATED_TEXT} ({inp.corpus.label}): its KLD "
                       "flatters it; calibrate on other text")
        if w.type == "MXFP4_MOE" and not experts:
            out.append(f"{where}: MXFP4_MOE quantizes the experts of a mixture-of-experts model; {info.architecture} "
                       "has none, so this measures an ordinary mix under an MoE name")
        if w.type in TRAINED_FOR and info.architecture not in TRAINED_ARCHITECTURES:
            out.append(f"{where}: {w.type} is a {TRAINED_FOR[w.type]} format for models trained for it (BitNet "
                       f"b1.58 and the like); {info.architecture} weights come out destroyed (KLD in the tens of "
                       "nats), not merely degraded")
    return out
