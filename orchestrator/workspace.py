"""The workspace: where the store, the artifacts and the logs of a sweep live."""

from __future__ import annotations

import errno
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from orchestrator.errors import UsageError, WorkspaceBusy, WorkspaceError

DEFAULT = ".quantsweep"


class Workspace:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root or os.environ.get("QUANTSWEEP_WORKSPACE") or DEFAULT).expanduser().resolve()
        if self.root.exists() and not self.root.is_dir():
            where = "--workspace" if root else "$QUANTSWEEP_WORKSPACE" if os.environ.get(
                "QUANTSWEEP_WORKSPACE") else "the workspace"
            raise UsageError(f"{where} {self.root} is a file, not a folder: give a folder (made if missing)")

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

    def model_path(self, stem: str, key: str) -> Path:
        """A model made here: named by its type and its key (never by a recipe's label, which may change
        or differ between recipes that share the model). A file of this key under an earlier name
        (`<label>-<key>.gguf`, as earlier versions named it) is renamed to this one."""
        path = self.artifacts / "models" / f"{_safe(stem)}-{key}.gguf"
        if not path.exists() and path.parent.is_dir():
            for old in path.parent.glob(f"*-{key}.gguf"):
                try:
                    os.replace(old, path)
                except OSError:
                    return old
                break
        return path

    def relative(self, path: str | Path) -> str:
        """How the store records a file of this workspace: relative to it, so a copied or moved
        workspace is whole as it is."""
        path = Path(path)
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def resolve(self, recorded: str) -> Path:
        """A file as the store recorded it (relative, or absolute in stores of earlier versions)."""
        return self.root / recorded if recorded and not Path(recorded).is_absolute() else Path(recorded)

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
        """One writer at a time: a second `run` on the same workspace is refused, not interleaved. The lock
        is held on the workspace folder itself, so no file can be removed to bypass it, and a moved
        workspace keeps it (a file system without flock on folders, NFS, falls back to a lock file)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                code = errno.EROFS if _read_only_fs(self.root) else errno.EACCES
                raise OSError(code, os.strerror(code))
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise WorkspaceError(f"the workspace {self.root} cannot be written: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceBusy(f"{self.root} is in use by another quantsweep run") from None
            except OSError:  # no flock on a folder here: a file that is never deleted
                os.close(fd)
                fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise WorkspaceBusy(f"{self.root} is in use by another quantsweep run") from None
            yield
        finally:
            os.close(fd)


def _read_only_fs(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:60]
