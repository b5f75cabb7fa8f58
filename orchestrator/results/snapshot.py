"""A columnar copy of a store's results: reading commands (report, recommend, compare, export) read a
parquet file in milliseconds instead of turning 50,000 SQLite rows into columns, which takes a second.

The copy is named by the store's results token, which triggers change at every change of the results
(store.py, migration 4): a copy is never stale, it is simply not found, and the next read makes the one
for the new token, from one read transaction. It holds every recipe's rows, so the copy `run` makes at
its end serves each reading command, for one recipe (filtered, in milliseconds) or all (`export`). It
lives in the cache (`QUANTSWEEP_CACHE/snapshots`), not in the workspace, so a read-only store (another
workspace's, in `compare`) gets one too; the `KEEP` most recently used are kept. The store stays the only
source of truth: deleting the folder loses nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

KEEP = 32


def warm() -> None:
    """Load what making a copy needs (pyarrow, and pandas, which pyarrow reaches for) in the background,
    while a sweep's tools run: the copy at the run's end then costs milliseconds, not a third of a second."""
    import threading

    def load() -> None:
        import pandas  # noqa: F401
        import pyarrow.compute  # noqa: F401
        import pyarrow.parquet  # noqa: F401

    threading.Thread(target=load, name="quantsweep-warm", daemon=True).start()


def folder() -> Path:
    from orchestrator.tools.toolchain import cache_root

    return cache_root() / "snapshots"


def _path(token: str) -> Path:
    return folder() / f"{token}.parquet"


def table(store, recipe: str | None = None, leave_out=()):
    """The results of `recipe` (all when None) as an Arrow table without the columns `leave_out`;
    None when the store cannot have a copy (older than version 4 and read-only) or holds no such rows:
    the caller then reads SQLite itself."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t, rows = None, None
    with store.reading():
        token = store.results_token()
        if token is None:
            return None
        path = _path(token)
        if path.is_file():
            try:
                pf = pq.ParquetFile(path)
                t = pf.read(columns=[c for c in pf.schema_arrow.names if c not in leave_out or c == "recipe"])
                os.utime(path)
            except (OSError, pa.ArrowException):  # damaged: made again below
                path.unlink(missing_ok=True)
        if t is None:
            names, rows = store.fetch()
    if t is None:
        if not rows:
            return None
        t = pa.table([_column(col) for col in zip(*rows)], names=names)
        _write(t, path)
    if recipe is not None:
        mine = pc.equal(t["recipe"], recipe)
        if pc.sum(mine).as_py() != t.num_rows:  # (a store of one recipe is not copied again)
            t = t.filter(mine)
    if not t.num_rows:
        return None
    return t.drop_columns([c for c in leave_out if c in t.column_names])


def _column(values):
    """One column as Arrow; a column whose cells hold values of different SQLite types (a store edited
    by hand) as text, which is what it holds."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _write(t, path: Path) -> None:
    import pyarrow.parquet as pq

    from orchestrator.files import atomic_path

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(t, tmp)
    except OSError:  # a cache that cannot be written costs speed, never an answer
        return
    kept = []
    for p in path.parent.glob("*.parquet"):
        try:
            kept.append((p.stat().st_mtime, p))
        except OSError:  # removed by another reader meanwhile
            pass
    for _, p in sorted(kept, reverse=True)[KEEP:]:
        p.unlink(missing_ok=True)
