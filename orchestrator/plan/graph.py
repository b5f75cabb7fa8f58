"""Recipe -> cells -> jobs with content keys. Pure: no tool runs, no writes.

A job's key is a tagged hash over everything that can change its numbers: input content
(file hashes, or the keys of the jobs that make them), the toolchain identity and every flag.
A key that the store holds as done is never run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from orchestrator.tools import llama_types as lt
from orchestrator.inputs.gguf_info import GGUFInfo
from orchestrator.inputs import Corpus
from orchestrator.recipe.model import Recipe, WeightSpec
from orchestrator.tools.perplexity import logits_size

KINDS = ("reference", "imatrix", "quantize", "base", "kld", "bench")
# what `plan`, `run` and every message call each kind: one name for one thing
KIND_NAMES = {"reference": "reference model", "imatrix": "imatrix", "quantize": "quantize",
              "base": "reference logits", "kld": "kld", "bench": "bench"}


def content_key(tag: str, **parts) -> str:
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return f"{tag}-" + hashlib.sha256(f"{tag}\n{blob}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Cell:
    weights: str
    type_k: str
    type_v: str
    ctx: int

    @property
    def id(self) -> str:
        return f"{self.weights}|{self.type_k}|{self.type_v}|c{self.ctx}"

    def __str__(self) -> str:
        return f"{self.weights} K={self.type_k} V={self.type_v} c={self.ctx}"


@dataclass(frozen=True)
class Job:
    key: str
    kind: str
    label: str
    deps: tuple[str, ...] = ()
    params: dict = field(default_factory=dict, compare=False, hash=False)
    cell: Cell | None = None


@dataclass(frozen=True)
class PlanInputs:
    recipe: Recipe
    source_path: Path
    source_sha: str
    source_info: GGUFInfo
    corpus: Corpus
    toolchain: dict
    host: dict
    imatrix_inputs: dict = field(default_factory=dict)  # weight label -> Corpus or (Path, sha)
    corpus_tokens: dict = field(default_factory=dict)  # corpus sha256 -> its tokens for this model, where counted


@dataclass(frozen=True)
class Plan:
    inputs: PlanInputs
    jobs: tuple[Job, ...]
    cells: tuple[Cell, ...]
    model_keys: dict  # weight label -> model artifact key ("source-<sha>" for the source itself)
    artifact_stems: dict = field(default_factory=dict)  # model artifact key -> its file name's stem (its type)
    measured: tuple[Job, ...] = ()  # every cell's kld and bench job: cells of equal weights share one key

    def of_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs if j.kind == kind]

    def logits_bytes(self) -> int:
        return sum(j.params["logits_bytes"] for j in self.of_kind("base"))

    def disk_bytes(self, keys) -> int:
        """What the jobs `keys` write to the workspace: models (estimated from their type), importance
        matrices and reference logits (exact)."""
        by_key = {j.key: j for j in self.jobs}
        return sum(by_key[k].params.get("logits_bytes", by_key[k].params.get("out_bytes", 0)) for k in keys)


def source_key(sha: str) -> str:
    return f"source-{sha[:24]}"


def build(inp: PlanInputs) -> Plan:
    r, tc = inp.recipe, inp.toolchain
    ev, bench = r.evaluation, r.bench
    jobs: list[Job] = []
    src = source_key(inp.source_sha)

    # the reference model: the source as is, or converted to a float / Q8_0 type
    if r.reference.type == "source":
        ref_key = src
    else:
        ref_key = content_key("reference", input=src, type=r.reference.type, toolchain=tc)
        jobs.append(Job(ref_key, "reference", f"reference model {r.reference.type}", (), {
            "input": src, "type": r.reference.type, "allow_requantize": inp.source_info.is_quantized,
            "stem": f"reference-{r.reference.type}", "out_bytes": model_bytes(inp, r.reference.type)}))
    # quantize from the reference when it is a float type (more precise than the source), else the source
    if r.reference.type in lt.FLOAT_TYPES:
        quant_input, input_quantized = ref_key, False
    else:
        quant_input, input_quantized = src, inp.source_info.is_quantized

    model_keys: dict[str, str] = {}
    for w in r.weights:
        model_keys[w.label] = _weights_jobs(w, inp, quant_input, input_quantized, jobs)

    cells: list[Cell] = []
    for ctx in ev.contexts:
        chunks = ev.chunks
        n_chunk = _n_chunks(inp, ctx)
        base_key = content_key("base", reference=ref_key, corpus=inp.corpus.sha256, ctx=ctx, chunks=chunks,
                               batch=ev.batch, ubatch=ev.ubatch, flash_attn=ev.flash_attn,
                               gpu_layers=ev.gpu_layers, extra=ev.extra_args, toolchain=tc)
        jobs.append(Job(base_key, "base", f"reference logits c={ctx}", _real((ref_key,)), {
            "model": ref_key, "ctx": ctx, "chunks": chunks, "n_vocab": inp.source_info.n_vocab,
            "logits_bytes": logits_size(ctx, inp.source_info.n_vocab, n_chunk), "n_chunk": n_chunk}))
        for w, (k, v) in product(r.weights, r.cache.expanded()):
            cell = Cell(w.label, k, v, ctx)
            cells.append(cell)
            mk = model_keys[w.label]
            kld_key = content_key("kld", model=mk, base=base_key, cache_k=k, cache_v=v, batch=ev.batch,
                                  ubatch=ev.ubatch, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                                  extra=ev.extra_args, toolchain=tc)
            jobs.append(Job(kld_key, "kld", f"kld {cell}", _real((mk, base_key)),
                            {"model": mk, "base": base_key, "cache_k": k, "cache_v": v, "ctx": ctx}, cell))
    if bench.enabled:
        for w, (k, v) in product(r.weights, r.cache.expanded()):
            mk = model_keys[w.label]
            bench_key = content_key("bench", model=mk, cache_k=k, cache_v=v, prompt=bench.prompt, gen=bench.gen,
                                    depth=bench.depth, repetitions=bench.repetitions,
                                    flash_attn=bench.flash_attn, gpu_layers=bench.gpu_layers,
                                    threads=bench.threads, batch=bench.batch, ubatch=bench.ubatch,
                                    extra=bench.extra_args, toolchain=tc, host=inp.host)
            cell = Cell(w.label, k, v, ev.contexts[0])
            jobs.append(Job(bench_key, "bench", f"bench {w.label} K={k} V={v}", _real((mk,)),
                            {"model": mk, "cache_k": k, "cache_v": v}, cell))
    jobs.sort(key=lambda j: KINDS.index(j.kind))  # a stable topological order: kinds only depend leftwards
    measured = tuple(j for j in jobs if j.cell is not None)
    # weights entries with the same content under other labels share their jobs: each runs, and counts, once
    seen: set[str] = set()
    jobs = [j for j in jobs if not (j.key in seen or seen.add(j.key))]
    stems = {j.key: j.params["stem"] for j in jobs if j.kind in ("reference", "quantize")}
    return Plan(inp, tuple(jobs), tuple(cells), model_keys, stems, measured)


def _weights_jobs(w: WeightSpec, inp: PlanInputs, quant_input: str, input_quantized: bool,
                  jobs: list[Job]) -> str:
    if w.type == "source":
        return source_key(inp.source_sha)
    tc = inp.toolchain
    imatrix_key = None
    if w.imatrix is not None:
        im = inp.imatrix_inputs[w.label]
        if w.imatrix.file is not None:
            imatrix_key = f"imatrixfile-{im[1][:24]}"
        else:
            imatrix_key = content_key("imatrix", model=quant_input, corpus=im.sha256, ctx=w.imatrix.ctx,
                                      chunks=w.imatrix.chunks, toolchain=tc)
            if not any(j.key == imatrix_key for j in jobs):
                jobs.append(Job(imatrix_key, "imatrix", f"imatrix {im.label}", _real((quant_input,)), {
                    "model": quant_input, "corpus_key": im.sha256, "ctx": w.imatrix.ctx, "chunks": w.imatrix.chunks,
                    "out_bytes": inp.source_info.n_params // 64}))  # ≈ 4 bytes a column of each matrix
    key = content_key("quantize", input=quant_input, type=w.type, imatrix=imatrix_key,
                      tensor_types=w.tensor_types, extra=w.extra_args, toolchain=tc)
    if not any(j.key == key for j in jobs):
        imatrix_file = str(inp.imatrix_inputs[w.label][0]) if w.imatrix and w.imatrix.file else None
        jobs.append(Job(key, "quantize", f"quantize {w.label}", _real((quant_input, imatrix_key)), {
            "input": quant_input, "type": w.type, "imatrix": imatrix_key, "imatrix_file": imatrix_file,
            "tensor_types": dict(w.tensor_types), "extra": list(w.extra_args),
            "allow_requantize": input_quantized, "stem": w.type, "out_bytes": model_bytes(inp, w.type)}))
    return key


def model_bytes(inp: PlanInputs, type_name: str) -> int:
    """A model's size before it is made: its parameters at the type's nominal bits per weight and a
    margin for scales and the tensors kept at higher precision (an estimate for the disk check)."""
    return int(inp.source_info.n_params * lt.nominal_bpw(type_name) / 8 * 1.1) + (8 << 20)


def _real(keys) -> tuple[str, ...]:
    """Dependencies that are jobs (the source model and given imatrix files are inputs, not jobs)."""
    return tuple(k for k in keys if k and not k.startswith(("source-", "imatrixfile-")))


def _n_chunks(inp: PlanInputs, ctx: int) -> int:
    """Chunks the base run will produce: the corpus's tokens (counted at plan time; else estimated at
    ≈ 4 characters a token) over ctx, as llama-perplexity cuts them."""
    tokens = inp.corpus_tokens.get(inp.corpus.sha256) or inp.corpus.n_chars // 4
    n = max(1, tokens // ctx)
    return min(n, inp.recipe.evaluation.chunks) if inp.recipe.evaluation.chunks else n
