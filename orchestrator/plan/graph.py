"""What a plan is made of: cells, jobs with content keys, the inputs. Pure: no tool runs, no writes.

A job's key is a tagged hash over everything that can change its numbers: input content
(file hashes, or the keys of the jobs that make them), the toolchain identity and every flag.
A key that the store holds as done is never run again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.inputs import Corpus
from orchestrator.inputs.gguf_info import GGUFInfo
from orchestrator.recipe.model import Recipe
from orchestrator.tools import llama_types as lt


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
    params: Any = field(default=None, compare=False, hash=False)  # its kind's typed parameters (jobs/)
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
    bases: tuple[BaseOnHand, ...] = ()  # reference logits the workspace holds: one may serve fewer chunks
    disk_free: int = 0  # bytes free where the workspace is (logits: auto streams what would not fit)
    task_files: dict = field(default_factory=dict)  # task name -> TaskFile (checked, hashed)


@dataclass(frozen=True)
class BaseOnHand:
    """A reference-logits file made by an earlier run: its job key, the --chunks it was asked (None: all),
    the chunks and ctx it holds, and its reference PPL after each chunk (where recorded)."""

    key: str
    chunks: int | None
    n_chunk: int
    n_ctx: int
    ppl_chunks: tuple[float, ...] = ()


@dataclass(frozen=True)
class Plan:
    inputs: PlanInputs
    jobs: tuple[Job, ...]
    cells: tuple[Cell, ...]
    model_keys: dict  # weight label -> model artifact key ("source-<sha>" for the source itself)
    artifact_stems: dict = field(default_factory=dict)  # model artifact key -> its file name's stem (its type)
    measured: tuple[Job, ...] = ()  # every cell's kld and bench job: cells of equal weights share one key
    files: dict = field(default_factory=dict)  # input key -> the file (source model, corpora, given imatrix)
    streamed: dict = field(default_factory=dict)  # ctx -> why its reference is streamed, its chunks and bytes

    def of_kind(self, kind: str) -> list[Job]:
        return [j for j in self.jobs if j.kind == kind]

    def logits_bytes(self) -> int:
        return sum(j.params.logits_bytes for j in self.of_kind("base"))

    def disk_bytes(self, keys) -> int:
        """What the jobs `keys` write to the workspace: models (estimated from their type), importance
        matrices and reference logits (exact)."""
        by_key = {j.key: j for j in self.jobs}
        return sum(by_key[k].params.disk_bytes() for k in keys)


def source_key(sha: str) -> str:
    return f"source-{sha[:24]}"


def imatrix_file_key(sha: str) -> str:
    """The input key of an importance matrix given as a file."""
    return f"imatrixfile-{sha[:24]}"


def model_bytes(inp: PlanInputs, type_name: str) -> int:
    """A model's size before it is made: its parameters at the type's nominal bits per weight and a
    margin for scales and the tensors kept at higher precision (an estimate for the disk check)."""
    return int(inp.source_info.n_params * lt.nominal_bpw(type_name) / 8 * 1.1) + (8 << 20)
