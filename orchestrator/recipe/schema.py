"""The recipe JSON Schema for editors: exactly what the loader accepts, shorthands included.

pydantic describes the models' canonical shape; the loader also takes the shorthands its `before`
validators expand (`weights: [Q8_0]`, `reference: F16`, `corpus: python-docs`, `f16/f16` pairs,
YAML's on/off booleans, a single `depth`), names case-insensitively, and `extends:`. This module adds
them, and the value rules the validators enforce, to pydantic's schema. What only the loader can
check (it needs two fields at once, or the files) is listed in LOADER_ONLY.
"""

from __future__ import annotations

import re

from orchestrator.tools import llama_types as lt
from orchestrator.inputs.tasksets import TASK_SETS
from orchestrator.recipe.model import (
    CORPUS_NAMES,
    HF_REPO_PATTERN,
    MANAGED_FLAGS,
    NAME_PATTERN,
    PYPI_PIN_PATTERN,
    Recipe,
)

LOADER_ONLY = (
    "weight labels are distinct",
    "ik_llama.cpp's own weight types need toolchain: ik",
    "toolchain: ik benches at depth 0 only",
    "a quantized V cache needs flash attention (evaluation.flash_attn / bench.flash_attn not off)",
    "llama-bench takes no f32 cache when bench is enabled",
    "ubatch <= batch",
    "bench measures something (prompt and gen not both 0)",
    "tensor_types keys are valid regular expressions",
    "'source' weights take no imatrix or tensor_types",
    "the file named by extends exists, and the merged recipe is complete",
    "chunks: auto takes no logits: stream",
    "max_logits applies to logits: auto",
    "max_logits is a size",
    "task names are distinct, and a named task set is given in its own format",
    "prompt names are distinct",
    "generate: runs on the mainline toolchain",
)


def case_insensitive(names) -> str:
    """A regex matching any of `names` in any letter case (JSON Schema patterns have no flags)."""
    def one(name: str) -> str:
        return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in name)
    return "^(?:" + "|".join(one(n) for n in names) + ")$"


def _exactly_one(*names: str) -> list[dict]:
    return [{"required": [n], "properties": {o: {"type": "null"} for o in names if o != n}} for n in names]


def _not_managed(tool: str) -> dict:
    flags = "|".join(re.escape(f) for f in sorted(MANAGED_FLAGS[tool]))
    return {"type": "string", "not": {"pattern": f"^(?:{flags})(?:=.*)?$"},
            "description": "a flag quantsweep does not set itself"}


def _flash() -> dict:
    return {"anyOf": [{"enum": ["on", "off", "auto"]}, {"type": "boolean"}], "default": "auto",
            "description": "on, off or auto (YAML's bare on/off are read as these)"}


def schema() -> dict:
    s = Recipe.model_json_schema()
    d = s["$defs"]
    cache_type = {"enum": list(lt.CACHE_TYPES)}

    s["properties"]["name"]["pattern"] = NAME_PATTERN
    s["properties"]["extends"] = {"type": "string", "description": "a base recipe (path relative to this file) "
                                  "whose fields this one overrides"}
    required = s.pop("required")
    s["if"] = {"required": ["extends"]}  # a child recipe may leave the base's required fields out
    s["else"] = {"required": required}

    d["HFSource"]["properties"]["repo"]["pattern"] = HF_REPO_PATTERN
    d["HFSource"]["oneOf"] = _exactly_one("file", "quant")
    d["PyPISource"]["properties"]["package"]["pattern"] = PYPI_PIN_PATTERN
    d["ModelSpec"]["oneOf"] = _exactly_one("path", "hf", "pypi")
    d["ImatrixSpec"]["oneOf"] = _exactly_one("file", "corpus")

    corpus = d["CorpusSpec"]
    corpus["oneOf"] = _exactly_one("name", "path")
    d["CorpusSpec"] = {"anyOf": [{"enum": list(CORPUS_NAMES), "description": "a built-in corpus"},
                                 corpus]}

    ref = d["ReferenceSpec"]
    ref_types = case_insensitive(("source", *lt.FLOAT_TYPES, "Q8_0"))
    ref["properties"]["type"]["pattern"] = ref_types
    d["ReferenceSpec"] = {"anyOf": [{"type": "string", "pattern": ref_types}, ref]}

    w = d["WeightSpec"]
    w["properties"]["type"]["pattern"] = case_insensitive(("source", *lt.QUANT_TYPES, *lt.IK_QUANT_TYPES))
    w["properties"]["tensor_types"]["additionalProperties"] = {"type": "string",
                                                               "pattern": case_insensitive(lt.GGML_TYPES)}
    w["properties"]["extra_args"]["items"] = _not_managed("quantize")
    w["if"] = {"properties": {"type": {"pattern": case_insensitive(lt.NEEDS_IMATRIX)}}}
    w["then"] = {"required": ["imatrix"], "properties": {"imatrix": {"type": "object"}}}
    plain = [t for t in (*lt.QUANT_TYPES, *lt.IK_QUANT_TYPES) if t not in lt.NEEDS_IMATRIX]
    d["WeightSpec"] = {"anyOf": [{"type": "string", "pattern": case_insensitive(("source", *plain)),
                                  "description": "a llama-quantize type that needs no imatrix, or source"}, w]}

    c = d["CacheSpec"]
    c["properties"]["pairs"]["items"] = {"anyOf": [
        {"type": "array", "prefixItems": [cache_type, cache_type], "items": False, "minItems": 2},
        {"type": "string", "pattern": "^(?:{0})/(?:{0})$".format("|".join(lt.CACHE_TYPES)),
         "description": "K/V, e.g. q8_0/q4_0"}]}
    c["properties"]["k"]["items"] = cache_type
    c["properties"]["v"]["items"] = cache_type
    c["dependentRequired"] = {"k": ["v"], "v": ["k"]}
    c["anyOf"] = [{"required": ["pairs"], "properties": {"pairs": {"minItems": 1}}},
                  {"required": ["k", "v"], "properties": {"k": {"minItems": 1}, "v": {"minItems": 1}}}]

    ev = d["EvalSpec"]["properties"]
    ev["ctx"] = {"anyOf": [{"type": "integer", "minimum": 16},
                           {"type": "array", "items": {"type": "integer", "minimum": 16}, "minItems": 1}],
                 "default": 512, "description": ev["ctx"].get("description", "")}
    ev["flash_attn"] = _flash()
    ev["extra_args"]["items"] = _not_managed("perplexity")
    ev["chunks"] = {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}, {"type": "null"}],
                    "default": None, "description": ev["chunks"].get("description", "")}
    # precision and max_chunks belong to chunks: auto
    d["EvalSpec"]["if"] = {"not": {"required": ["chunks"], "properties": {"chunks": {"const": "auto"}}}}
    d["EvalSpec"]["then"] = {"properties": {"precision": {"type": "null"}, "max_chunks": {"type": "null"}}}

    b = d["BenchSpec"]["properties"]
    b["depth"] = {"anyOf": [{"type": "integer", "minimum": 0},
                            {"type": "array", "items": {"type": "integer", "minimum": 0}}],
                  "default": [0], "description": b["depth"].get("description", "")}
    b["flash_attn"] = _flash()
    b["extra_args"]["items"] = _not_managed("bench")
    sets = list(TASK_SETS)
    t = d["TaskSpec"]
    t.pop("required", None)  # a file's name defaults to its stem
    t["if"] = {"required": ["path"], "properties": {"path": {"type": "string"}}}
    t["then"] = {"required": ["format"], "properties": {"format": {"type": "string"}}}
    t["else"] = {"required": ["name"], "properties": {"name": {"enum": sets}}}
    t["properties"]["name"]["pattern"] = NAME_PATTERN
    d["TaskSpec"] = {"anyOf": [
        {"enum": sets, "description": "a named task set, all its tasks"},
        {"type": "object", "minProperties": 1, "maxProperties": 1, "propertyNames": {"enum": sets},
         "additionalProperties": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
         "description": "a named task set: how many tasks"},
        t]}
    pr = d["PromptSpec"]
    pr["properties"]["name"]["pattern"] = f"^$|{NAME_PATTERN}"
    d["PromptSpec"] = {"anyOf": [{"type": "string", "minLength": 1, "description": "the prompt's text"}, pr]}
    s["$comment"] = "Checked by quantsweep's loader only: " + "; ".join(LOADER_ONLY)
    return s
