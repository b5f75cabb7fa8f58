"""Fast representatives of the fault classes `make chaos` injects at scale (bench/chaos.py)."""

import hashlib
import sqlite3

import pytest

from orchestrator.cli import main
from orchestrator.results.store import MIGRATIONS, Store


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store_of_something_else(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
    db.execute("INSERT INTO photos VALUES (1, 'a')")
    db.commit()
    db.close()


def _store_from_the_future(path):
    Store(path).db.close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.commit()
    db.close()


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_bytes(b"\x00garbage" * 600), "not a quantsweep store (file is not a database)"),
    (_store_of_something_else, "an SQLite database of something else (tables: photos)"),
    (_store_from_the_future, f"written by a newer quantsweep (store version {len(MIGRATIONS) + 1}"),
])
@pytest.mark.parametrize("command", ["report", "recommend", "export"])
def test_a_store_that_is_not_ours_is_named_and_left_untouched(tmp_path, capsys, make, says, command):
    ws = tmp_path / "ws"
    ws.mkdir()
    store = ws / "store.sqlite"
    make(store)
    before = _digest(store)
    args = {"report": ["report", "demo"], "recommend": ["recommend", "demo", "--vram", "24GiB", "--ctx", "4096"],
            "export": ["export", "--output", str(tmp_path / "x.csv")]}[command]
    assert main([*args, "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(store) in err[0] and says in err[0]
    assert _digest(store) == before and not (ws / "store.sqlite-wal").exists()


FULL_STORE = """
import resource, signal, sys
from pathlib import Path
from orchestrator.results.store import Store
store = Store(Path(sys.argv[1]))
row = {"recipe": "r", "cell_id": "c0", "measurement": "kld", "status": "ok", "kld_mean": 0.01}
store.put_results([row])
store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = Path(sys.argv[1]).stat().st_size + 8192  # the disk is full: the next write of any size fails
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
# more rows than the page cache holds: pages are written (and fail) before the COMMIT
store.put_results([{**row, "cell_id": f"c{i}", "reason": "x" * 4000} for i in range(1, 1000)])
"""


def test_a_full_store_says_so_and_keeps_what_it_held(tmp_path):
    """A write the disk cannot hold: SQLite rolls the transaction back itself, and the error the user sees
    must be its own, not a failed ROLLBACK's "no transaction is active"; the rows before stay."""
    import subprocess
    import sys

    path = tmp_path / "store.sqlite"
    proc = subprocess.run([sys.executable, "-c", FULL_STORE, str(path)], capture_output=True, text=True)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1 and last.startswith("sqlite3.OperationalError: disk I/O error"), proc.stderr
    store = Store(path)
    assert store.db.execute("SELECT cell_id FROM results").fetchall() == [("c0",)]
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
