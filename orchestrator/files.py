"""File helpers: hashing (with a memo keyed by size and mtime) and atomic publication."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

_CHUNK = 1 << 22


_memo_lock = threading.Lock()


def sha256_file(path: Path, memo_path: Path | None = None) -> str:
    """sha256 of a file; a memo beside the workspace avoids re-reading multi-GB GGUFs."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    memo = _read_memo(memo_path)
    hit = memo.get(str(path))
    if hit and hit[0] == stamp:
        return hit[1]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    if memo_path is not None:
        with _memo_lock:  # workers hash their artifacts in their own threads
            memo = _read_memo(memo_path)
            memo[str(path)] = [stamp, digest]
            write_text_atomic(memo_path, json.dumps(memo, indent=0, sort_keys=True))
    return digest


def known_sha256(path: Path, memo_path: Path) -> str | None:
    """The memoized sha256 of a file unchanged since it was hashed (same size and mtime), else None."""
    path = Path(path).resolve()
    st = path.stat()
    hit = _read_memo(memo_path).get(str(path))
    return hit[1] if hit and hit[0] == f"{st.st_size}:{st.st_mtime_ns}" else None


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_memo(memo_path: Path | None) -> dict:
    if memo_path is None or not memo_path.exists():
        return {}
    try:
        return json.loads(memo_path.read_text())
    except (OSError, ValueError):
        return {}


@contextmanager
def atomic_path(final: Path):
    """Yield a temporary name beside `final`; rename onto it only if the block completes. The file
    ends with the permissions any new file gets here (mkstemp's are private)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(final: Path, text: str) -> None:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_partials(directory: Path) -> int:
    """Temporary files left by a killed run; nothing else in the workspace is ever partial."""
    n = 0
    if directory.exists():
        for p in directory.rglob(".*.partial"):
            p.unlink(missing_ok=True)
            n += 1
    return n
