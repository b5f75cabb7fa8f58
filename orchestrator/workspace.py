"""The workspace: where the store, the artifacts and the logs of a sweep live."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from .errors import WorkspaceBusy

DEFAULT = ".quantsweep"


class Workspace:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root or os.environ.get("QUANTSWEEP_WORKSPACE") or DEFAULT).expanduser().resolve()

    @property
    def store_path(self) -> Path:
        return self.root / "store.sqlite"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def corpora(self) -> Path:
        return self.root / "corpora"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def model_path(self, label: str, key: str) -> Path:
        return self.artifacts / "models" / f"{_safe(label)}-{key}.gguf"

    def imatrix_path(self, key: str) -> Path:
        return self.artifacts / "imatrix" / f"{key}.gguf"

    def logits_path(self, key: str) -> Path:
        return self.artifacts / "logits" / f"{key}.kld"

    def log_dir(self, key: str) -> Path:
        return self.logs / key

    def exists(self) -> bool:
        return self.store_path.exists()

    @contextmanager
    def lock(self):
        """One writer at a time: a second `run` on the same workspace is refused, not interleaved."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceBusy(f"{self.root} is in use by another quantsweep run") from None
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:60]
