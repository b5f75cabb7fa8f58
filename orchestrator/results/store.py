"""The results store: SQLite in the workspace, schema evolved by numbered migrations.

`jobs` caches every tool run by content key (done or failed, with its parsed result);
`results` holds one row per cell and measurement, with every statistic and its provenance.
Reports and exports are functions of `results` alone.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

KLD_STATS = [
    "ppl_q", "ppl_q_err", "ppl_base", "ppl_base_err", "cor_ln_ppl", "ln_ratio", "ln_ratio_err",
    "ppl_ratio", "ppl_ratio_err", "ppl_diff", "ppl_diff_err",
    "kld_mean", "kld_mean_err", "kld_max", "kld_p99_9", "kld_p99", "kld_p95", "kld_p90", "kld_median",
    "kld_p10", "kld_p5", "kld_p1", "kld_p0_1", "kld_min",
    "dp_mean", "dp_mean_err", "dp_max", "dp_p99_9", "dp_p99", "dp_p95", "dp_p90", "dp_p75", "dp_median",
    "dp_p25", "dp_p10", "dp_p5", "dp_p1", "dp_p0_1", "dp_min", "rms_dp", "rms_dp_err",
    "same_top", "same_top_err",
]
REAL_COLUMNS = KLD_STATS + ["ts_mean", "ts_std", "ns_mean", "ns_std", "bpw", "tool_wall_s",
                            "quantize_wall_s", "file_gib", "accuracy"]
INT_COLUMNS_V1 = ["n_chunks", "ctx", "n_prompt", "n_gen", "n_depth", "repetitions", "file_bytes",
                  "tensor_bytes", "n_params", "n_vocab"]
INT_COLUMNS = INT_COLUMNS_V1 + ["fallback_tensors", "n_tokens", "tokens_evaluated", "n_tasks", "n_right",
                                "n_generated"]
TEXT_COLUMNS_V1 = [
    "recipe", "recipe_hash", "cell_id", "measurement", "test", "weights", "weights_type", "type_k", "type_v",
    "status", "reason", "stderr_tail", "log_dir", "job_key", "argv", "samples_ns", "extra_json",
    "model_name", "source_sha256", "weights_sha256", "reference", "reference_sha256", "corpus",
    "corpus_sha256", "imatrix", "toolchain_commit", "toolchain_backends", "toolchain_json",
    "host_cpu", "host_gpu", "created_at", "source", "source_quant",
]
TEXT_COLUMNS = TEXT_COLUMNS_V1 + ["model_arch_json",  # a new column: a new migration below
                                  "tensor_mix_json", "source_tensor_mix_json", "toolchain_name",
                                  "task_format", "task_outcomes", "generated_text", "generated_ids"]

# each step: the SQL statements that take the schema from version N-1 to N (PRAGMA user_version). Each is
# frozen text, never built from the column lists above: a column added later is a new step, and a store
# made today at version 1 is the version 1 every older store is (tests/test_golden.py checks it)
MIGRATIONS = [
    # 1: jobs cache, runs, results
    [
        "CREATE TABLE jobs (key TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, "
        "result_json TEXT, artifact TEXT, log_dir TEXT, reason TEXT, stderr_tail TEXT, wall_s REAL, "
        "argv TEXT, finished_at TEXT)",
        "CREATE TABLE runs (id INTEGER PRIMARY KEY, recipe TEXT, recipe_hash TEXT, recipe_json TEXT, "
        "toolchain_json TEXT, host_json TEXT, started_at TEXT, finished_at TEXT, status TEXT, "
        "n_jobs_run INTEGER, n_failed INTEGER, wall_s REAL, tool_wall_s REAL)",
        "CREATE TABLE results (id INTEGER PRIMARY KEY, run_id INTEGER, recipe TEXT, recipe_hash TEXT, "
        "cell_id TEXT, measurement TEXT, test TEXT, weights TEXT, weights_type TEXT, type_k TEXT, "
        "type_v TEXT, status TEXT, reason TEXT, stderr_tail TEXT, log_dir TEXT, job_key TEXT, argv TEXT, "
        "samples_ns TEXT, extra_json TEXT, model_name TEXT, source_sha256 TEXT, weights_sha256 TEXT, "
        "reference TEXT, reference_sha256 TEXT, corpus TEXT, corpus_sha256 TEXT, imatrix TEXT, "
        "toolchain_commit TEXT, toolchain_backends TEXT, toolchain_json TEXT, host_cpu TEXT, "
        "host_gpu TEXT, created_at TEXT, source TEXT, source_quant TEXT, ppl_q REAL, ppl_q_err REAL, "
        "ppl_base REAL, ppl_base_err REAL, cor_ln_ppl REAL, ln_ratio REAL, ln_ratio_err REAL, "
        "ppl_ratio REAL, ppl_ratio_err REAL, ppl_diff REAL, ppl_diff_err REAL, kld_mean REAL, "
        "kld_mean_err REAL, kld_max REAL, kld_p99_9 REAL, kld_p99 REAL, kld_p95 REAL, kld_p90 REAL, "
        "kld_median REAL, kld_p10 REAL, kld_p5 REAL, kld_p1 REAL, kld_p0_1 REAL, kld_min REAL, "
        "dp_mean REAL, dp_mean_err REAL, dp_max REAL, dp_p99_9 REAL, dp_p99 REAL, dp_p95 REAL, "
        "dp_p90 REAL, dp_p75 REAL, dp_median REAL, dp_p25 REAL, dp_p10 REAL, dp_p5 REAL, dp_p1 REAL, "
        "dp_p0_1 REAL, dp_min REAL, rms_dp REAL, rms_dp_err REAL, same_top REAL, same_top_err REAL, "
        "ts_mean REAL, ts_std REAL, ns_mean REAL, ns_std REAL, bpw REAL, tool_wall_s REAL, "
        "quantize_wall_s REAL, file_gib REAL, n_chunks INTEGER, ctx INTEGER, n_prompt INTEGER, "
        "n_gen INTEGER, n_depth INTEGER, repetitions INTEGER, file_bytes INTEGER, tensor_bytes INTEGER, "
        "n_params INTEGER, n_vocab INTEGER, UNIQUE (recipe, cell_id, measurement, test))",
        "CREATE INDEX results_recipe ON results (recipe)",
    ],
    # 2: the model's architecture keys, so the memory model works from the store alone
    ["ALTER TABLE results ADD COLUMN model_arch_json TEXT"],
    # 3: what the weights really are: bytes per tensor type (theirs and the source's), and how many
    # tensors llama-quantize had to give another type than asked (row widths its blocks do not divide)
    ["ALTER TABLE results ADD COLUMN tensor_mix_json TEXT",
     "ALTER TABLE results ADD COLUMN source_tensor_mix_json TEXT",
     "ALTER TABLE results ADD COLUMN fallback_tensors INTEGER"],
    # 4: a token that changes with every change of the results, kept by triggers (no writer can forget
    # it): readers key their columnar copy of the results by it (snapshot.py)
    ["CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
     "INSERT INTO meta VALUES ('results_token', lower(hex(randomblob(8))))",
     *[f"CREATE TRIGGER results_{op.lower()} AFTER {op} ON results BEGIN UPDATE meta SET value = "
       "lower(hex(randomblob(8))) WHERE key = 'results_token'; END" for op in ("INSERT", "UPDATE", "DELETE")]],
    # 5: the tokens a KLD cell scored, and (chunks: auto) all its runs evaluated, pilot included
    ["ALTER TABLE results ADD COLUMN n_tokens INTEGER",
     "ALTER TABLE results ADD COLUMN tokens_evaluated INTEGER"],
    # 6: which toolchain measured a row (llama.cpp or ik_llama.cpp; empty before: llama.cpp)
    ["ALTER TABLE results ADD COLUMN toolchain_name TEXT"],
    # 7: task accuracy (measurement 'task', test = the task's name): its format, the tasks run and right,
    # the score, and each task's outcome in the tool's order (1 right, 0 wrong), to pair with the reference
    ["ALTER TABLE results ADD COLUMN task_format TEXT",
     "ALTER TABLE results ADD COLUMN task_outcomes TEXT",
     "ALTER TABLE results ADD COLUMN accuracy REAL",
     "ALTER TABLE results ADD COLUMN n_tasks INTEGER",
     "ALTER TABLE results ADD COLUMN n_right INTEGER"],
    # 8: what a cell says (measurement 'generate', test = the prompt's name): its greedy continuation, the
    # token ids it was read back as, and how many
    ["ALTER TABLE results ADD COLUMN generated_text TEXT",
     "ALTER TABLE results ADD COLUMN generated_ids TEXT",
     "ALTER TABLE results ADD COLUMN n_generated INTEGER"],
]
# measurements whose rows of one cell come from one job each (a task set per job): replaced test by test, not
# as the cell's group (a bench's rows are one job's tests, replaced together)
ONE_JOB_A_TEST = {"task", "generate"}
BULKY = {"samples_ns", "stderr_tail", "toolchain_json", "extra_json"}
COLUMNS = ["run_id", *TEXT_COLUMNS, *REAL_COLUMNS, *[c for c in INT_COLUMNS if c not in REAL_COLUMNS]]


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Store:
    def __init__(self, path: Path):
        from orchestrator.errors import InputFileError

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists() and self.path.stat().st_size > 0
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:  # checked before anything is written to it: a file that is not ours is never changed
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.OperationalError:  # the machine, not the file: a disk I/O error, a full disk
            self.db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise InputFileError(f"{self.path}: not a quantsweep store ({exc}); move it aside or use another "
                                 "--workspace") from None
        if existed and (version == 0 and tables or version > 0 and "jobs" not in tables):
            self.db.close()
            raise InputFileError(f"{self.path}: an SQLite database of something else (tables: "
                                 f"{', '.join(sorted(tables)[:5])}), not a quantsweep store; left untouched")
        if version > len(MIGRATIONS):
            self.db.close()
            raise InputFileError(f"{self.path}: written by a newer quantsweep (store version {version}, this one "
                                 f"knows up to {len(MIGRATIONS)}); upgrade quantsweep to use this workspace")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    @classmethod
    def read_only(cls, path: Path) -> "Store":
        """Another workspace's store, only ever read: no migration, no pragma that writes, and no -wal or
        -shm file created next to it (a store whose writers have all closed is opened immutable; one
        with a live -wal is read through it). Columns added by later migrations are simply absent."""
        from orchestrator.errors import UsageError

        path = Path(path)
        if not path.is_file():
            raise UsageError(f"{path}: no such store")
        live = path.with_name(path.name + "-wal").exists()
        uri = f"{path.resolve().as_uri()}?mode=ro" + ("" if live else "&immutable=1")
        self = cls.__new__(cls)
        self.path = path
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            self.db.execute("SELECT 1 FROM results LIMIT 1")
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{path}: not a quantsweep store ({exc})") from None
        if version > len(MIGRATIONS):
            raise UsageError(f"{path}: written by a newer quantsweep (store version {version}, this one "
                             f"reads up to {len(MIGRATIONS)})")
        return self

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for n, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.tx():
                for sql in statements:
                    self.db.execute(sql)
                self.db.execute(f"PRAGMA user_version = {n}")

    @contextmanager
    def tx(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.db.in_transaction:  # SQLite has already rolled back after some errors (SQLITE_FULL):
                self.db.execute("ROLLBACK")  # a ROLLBACK then would hide the error under its own
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- jobs -------------------------------------------------------------------------------

    def job(self, key: str) -> dict | None:
        row = self.db.execute("SELECT key, kind, status, result_json, artifact, log_dir, reason, stderr_tail, "
                              "wall_s, argv, finished_at FROM jobs WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        names = ["key", "kind", "status", "result", "artifact", "log_dir", "reason", "stderr_tail", "wall_s", "argv",
                 "finished_at"]
        d = dict(zip(names, row))
        d["result"] = json.loads(d["result"]) if d["result"] else {}
        return d

    def done_jobs(self, kind: str) -> list[dict]:
        """Every job of `kind` recorded as done: key, result, artifact, argv."""
        rows = self.db.execute("SELECT key, result_json, artifact, argv FROM jobs WHERE kind = ? AND status = 'done'",
                               (kind,)).fetchall()
        return [{"key": k, "result": json.loads(r) if r else {}, "artifact": a, "argv": v} for k, r, a, v in rows]

    def job_statuses(self, keys) -> dict[str, str]:
        keys = list(keys)
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = f"SELECT key, status FROM jobs WHERE key IN ({','.join('?' * len(chunk))})"
            out.update(dict(self.db.execute(q, chunk).fetchall()))
        return out

    def machine_failures(self, keys) -> set[str]:
        """The failed jobs among `keys` whose failure was the machine's (disk, signal, memory, a damaged
        input): a plain `run` tries them again."""
        keys = list(keys)
        out: set[str] = set()
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            q = (f"SELECT key FROM jobs WHERE status = 'failed' AND json_extract(result_json, '$.machine') "
                 f"AND key IN ({','.join('?' * len(chunk))})")
            out.update(k for (k,) in self.db.execute(q, chunk))
        return out

    def record_job(self, key: str, kind: str, status: str, *, result: dict | None = None, artifact: str = "",
                   log_dir: str = "", reason: str = "", stderr_tail: str = "", wall_s: float = 0.0,
                   argv: str = "") -> None:
        with self.tx():
            self.db.execute("INSERT OR REPLACE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (key, kind, status, json.dumps(result or {}), artifact, log_dir, reason,
                             stderr_tail, wall_s, argv, now()))

    def amend_result(self, key: str, update: dict) -> None:
        """Add to a done job's result what was learnt after it was recorded (its artifact's sha256)."""
        with self.tx():
            row = self.db.execute("SELECT result_json FROM jobs WHERE key = ?", (key,)).fetchone()
            if row is not None:
                result = {**(json.loads(row[0]) if row[0] else {}), **update}
                self.db.execute("UPDATE jobs SET result_json = ? WHERE key = ?", (json.dumps(result), key))

    def kind_timings(self) -> dict[str, tuple[float, int]]:
        """Mean wall seconds and count of the done jobs of each kind: what `plan` predicts with."""
        rows = self.db.execute("SELECT kind, avg(wall_s), count(*) FROM jobs WHERE status='done' AND wall_s > 0 "
                               "GROUP BY kind").fetchall()
        return {k: (float(w), int(n)) for k, w, n in rows}

    def forget_failed(self, keys) -> None:
        with self.tx():
            self.db.executemany("DELETE FROM jobs WHERE key = ? AND status = 'failed'", [(k,) for k in keys])

    # -- runs -------------------------------------------------------------------------------

    def start_run(self, recipe: str, recipe_hash: str, recipe_json: str, toolchain: dict, host: dict) -> int:
        with self.tx():
            cur = self.db.execute("INSERT INTO runs (recipe, recipe_hash, recipe_json, toolchain_json, host_json, "
                                  "started_at, status) VALUES (?,?,?,?,?,?, 'running')",
                                  (recipe, recipe_hash, recipe_json, json.dumps(toolchain), json.dumps(host), now()))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def finish_run(self, run_id: int, status: str, n_jobs_run: int, n_failed: int, wall_s: float,
                   tool_wall_s: float) -> None:
        with self.tx():
            self.db.execute("UPDATE runs SET finished_at=?, status=?, n_jobs_run=?, n_failed=?, wall_s=?, "
                            "tool_wall_s=? WHERE id=?", (now(), status, n_jobs_run, n_failed, wall_s,
                                                          tool_wall_s, run_id))

    def runs(self):
        import pandas as pd  # only readers pay for pandas; a cached re-run never loads it

        return pd.read_sql_query("SELECT * FROM runs ORDER BY id", self.db)

    # -- results ----------------------------------------------------------------------------

    def put_results(self, rows: list[dict], recipe: str | None = None, cells: set[str] | None = None) -> None:
        """Rows replace what the store held for their (recipe, cell, measurement); with `cells`,
        rows of that recipe for cells no longer in it are dropped (the jobs cache keeps them)."""
        with self.tx():
            for key in {(r["recipe"], r["cell_id"], r["measurement"]) for r in rows
                        if r["measurement"] not in ONE_JOB_A_TEST}:
                self.db.execute("DELETE FROM results WHERE recipe=? AND cell_id=? AND measurement=?", key)
            for one in {(r["recipe"], r["cell_id"], r["measurement"], r.get("test") or "") for r in rows
                        if r["measurement"] in ONE_JOB_A_TEST}:
                self.db.execute("DELETE FROM results WHERE recipe=? AND cell_id=? AND measurement=? AND test=?", one)
            if recipe is not None and cells is not None:
                held = [c for (c,) in self.db.execute("SELECT DISTINCT cell_id FROM results WHERE recipe=?",
                                                      (recipe,))]
                for c in set(held) - cells:
                    self.db.execute("DELETE FROM results WHERE recipe=? AND cell_id=?", (recipe, c))
            for row in rows:
                extra = {k: v for k, v in row.items() if k not in COLUMNS}
                values = {k: row.get(k) for k in COLUMNS}
                if extra:
                    values["extra_json"] = json.dumps(extra, default=str)
                values["created_at"] = values.get("created_at") or now()
                cols = ", ".join(values)
                self.db.execute(f"INSERT OR REPLACE INTO results ({cols}) VALUES ({','.join('?' * len(values))})",
                                list(values.values()))

    def results(self, recipe: str | None = None, *, provenance: bool = True):
        """The rows of one recipe (all when None). provenance=False leaves out the bulky columns no
        table, plot or answer reads (raw samples, tool tails, the full toolchain and extra JSON).
        Read from the columnar copy of the store's current results when there is one (made on the
        first read after a change)."""
        import pandas as pd

        from orchestrator.results import snapshot

        t = snapshot.table(self, recipe, () if provenance else BULKY)
        if t is not None:
            return t.to_pandas()
        names, rows = self.fetch(recipe, self._columns(() if provenance else BULKY))
        return pd.DataFrame.from_records(rows, columns=names)

    def _columns(self, leave_out) -> str:
        if not leave_out:
            return "*"
        return ", ".join(r[1] for r in self.db.execute("PRAGMA table_info(results)") if r[1] not in leave_out)

    def fetch(self, recipe: str | None = None, columns: str = "*") -> tuple[list[str], list[tuple]]:
        names, cur = self.rows(recipe, columns)
        return names, cur.fetchall()

    def results_token(self) -> str | None:
        """What the results are now: a new random value after every change (None for a store older
        than version 4, opened read-only as it is)."""
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'results_token'").fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    @contextmanager
    def reading(self):
        """One read transaction: what is read inside it is one consistent state, whatever writes meanwhile."""
        self.db.execute("BEGIN")
        try:
            yield self
        finally:
            self.db.execute("COMMIT")

    def rows(self, recipe: str | None = None, columns: str = "*"):
        """(column names, a cursor over the rows in insertion order): `fetch`, and `pull` merging another store."""
        q, args = f"SELECT {columns} FROM results", tuple[str, ...]()
        if recipe is not None:
            q, args = q + " WHERE recipe = ?", (recipe,)
        cur = self.db.execute(q + " ORDER BY id", args)
        return [d[0] for d in cur.description], cur

    def recipes(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT recipe FROM results ORDER BY recipe")]
