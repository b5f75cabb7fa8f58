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


class Stopped(Exception):
    """A hash given up half-way (the run was interrupted)."""


def sha256_file(path: Path, memo_path: Path | None = None, stop: threading.Event | None = None) -> str:
    """sha256 of a file; a memo beside the workspace avoids re-reading multi-GB GGUFs. `stop`: given up
    (Stopped) between two chunks once set."""
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
            if stop is not None and stop.is_set():
                raise Stopped(str(path))
            h.update(chunk)
    digest = h.hexdigest()
    if memo_path is not None:
        remember_sha256(path, digest, memo_path, stamp)
    return digest


def remember_sha256(path: Path, digest: str, memo_path: Path, stamp: str | None = None) -> None:
    """Note a file's sha256 against its size and mtime (a file just made and hashed under another name
    keeps both across its rename)."""
    path = Path(path).resolve()
    if stamp is None:
        st = path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    with _memo_lock:  # workers hash their artifacts in their own threads
        memo = {p: v for p, v in _read_memo(memo_path).items() if os.path.exists(p)}  # files gone: forgotten
        memo[str(path)] = [stamp, digest]
        write_memo(memo_path, json.dumps(memo, indent=0, sort_keys=True))


def write_memo(path: Path, text: str) -> None:
    """A memo only saves work: one that cannot be written (a full or read-only cache) is skipped."""
    try:
        write_text_atomic(path, text)
    except OSError:
        pass


def disk_full(exc: BaseException) -> bool:
    """Whether an error is a full disk (Python's OSError, or pyarrow's, which names errno 28 in its text)."""
    import errno

    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "[errno 28]" in str(exc) \
        or "No space left on device" in str(exc)


def disk_of(path: Path) -> str:
    """The disk a path is on, as a user would name it: its mount point, file system and size, e.g.
    "/mnt/scratch (tmpfs, 60 MiB, 0 MiB free)"."""
    import shutil

    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    real = os.path.realpath(path)
    mount, fstype = "/", "?"
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2:
                    point = parts[1].replace("\\040", " ")
                    if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(mount):
                        mount, fstype = point, parts[2]
    except OSError:
        pass
    try:
        du = shutil.disk_usage(path)
    except OSError:
        return f"{mount} ({fstype})"
    return f"{mount} ({fstype}, {_mib(du.total)} MiB, {_mib(du.free)} MiB free)"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


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


DISK_MARGIN = 1.05  # what a run may write, estimated, must fit the free space with 5 % to spare


def fits_disk(need: int, free: int) -> bool:
    return need * DISK_MARGIN <= free


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
