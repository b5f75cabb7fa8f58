"""Fast representatives of `make chaos` with the real tools: a file-size limit (ulimit -f) stops the
reference model's write; the job is a failure row naming the disk and nothing partial is kept."""

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.results.store import Store

from ..helpers import small_recipe

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]


def test_a_file_size_limit_is_a_failure_row_naming_the_disk(tmp_path, tools, demo_model):
    path = small_recipe(tmp_path, demo_model, name="disk", weights=("Q8_0",), bench=False, pairs=(("f16", "f16"),))
    ws = tmp_path / "ws"
    limit = 32 * 2**20  # the F16 reference is ~270 MB

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--workspace", str(ws), "-q"],
                          cwd=REPO, preexec_fn=apply, capture_output=True, text=True)
    assert proc.returncode == 1
    status, reason = Store(ws / "store.sqlite").db.execute(
        "SELECT status, reason FROM jobs WHERE kind='reference'").fetchone()
    assert status == "failed" and reason.startswith("disk: writing reference-F16-") and "ulimit -f" in reason
    assert "32 MiB" in reason and ".partial" not in reason
    assert not [p for p in (ws / "artifacts").rglob("*") if p.is_file()]  # nothing partial kept


def test_two_runs_at_once_and_a_report_while_one_writes(tmp_path, tools, demo_model):
    """The second run on a busy workspace is refused in one line and changes nothing; a report taken while
    the first writes reads one consistent snapshot; the first run finishes as if alone."""
    import time

    path = small_recipe(tmp_path, demo_model, name="busy", weights=("Q8_0", "Q6_K", "Q4_K_M", "Q2_K"), chunks=6,
                        bench=False)  # long enough that the runner publishes finished cells mid-run (every 10 s)
    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "orchestrator.cli"]
    first = subprocess.Popen([*cmd, "run", str(path), "--workspace", str(ws), "-q"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:  # until the first cell is recorded
            if (ws / "store.sqlite").exists() and Store(ws / "store.sqlite").db.execute(
                    "SELECT count(*) FROM results WHERE measurement='kld'").fetchone()[0]:
                break
            time.sleep(0.2)
        assert first.poll() is None, "the first run ended before the test could race it"
        second = subprocess.run([*cmd, "run", str(path), "--workspace", str(ws)], cwd=REPO,
                                capture_output=True, text=True)
        assert second.returncode == 3, second.stderr  # the workspace, not the recipe or a cell
        assert second.stderr.strip().splitlines() == [f"quantsweep: error: {ws} is in use by another quantsweep run"]
        report = subprocess.run([*cmd, "report", "busy", "--workspace", str(ws), "--out", str(tmp_path / "r")],
                                cwd=REPO, capture_output=True, text=True)
        assert report.returncode == 0, report.stderr
    finally:
        out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    import pandas as pd

    snapshot = pd.read_csv(tmp_path / "r" / "cells.csv")
    final = Store(ws / "store.sqlite").results("busy")
    final = final[final.measurement == "kld"].set_index(["weights", "type_k", "type_v"])
    assert 1 <= len(snapshot) < len(final) == 8
    for r in snapshot.itertuples():  # every cell the report saw is complete and equals the final one
        assert r.kld_mean == pytest.approx(final.loc[(r.weights, r.type_k, r.type_v), "kld_mean"], abs=1e-6)
    assert Store(ws / "store.sqlite").db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_truncated_reference_logits_are_made_again_before_a_kld_reads_them(tmp_path, tools, demo_model, capsys):
    from orchestrator.cli import main

    path = small_recipe(tmp_path, demo_model, name="logits", weights=("Q8_0",), bench=False,
                        pairs=(("f16", "f16"),), chunks=2)
    ws = tmp_path / "ws"
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 0
    (logits,) = (ws / "artifacts" / "logits").glob("*.kld")
    whole = logits.read_bytes()
    logits.write_bytes(whole[: len(whole) // 2])
    small_recipe(tmp_path, demo_model, name="logits", weights=("Q8_0",), bench=False,
                 pairs=(("f16", "f16"), ("q8_0", "q8_0")), chunks=2)
    capsys.readouterr()
    assert main(["run", str(path), "--workspace", str(ws)]) == 0
    assert f"has {len(whole) // 2} bytes, {len(whole)} when it was made; made again" in capsys.readouterr().err
    assert logits.read_bytes() == whole


@pytest.mark.parametrize("damage, says", [
    (lambda b: b"_logits_" + (128).to_bytes(4, "little") + (32000).to_bytes(4, "little") + b[16:],
     "written for a vocabulary of 32000 tokens; this model has 49152 (another model's logits)"),
    (lambda b: b"GGUF" + b[4:], "not a base-logits file"),
])
def test_damaged_reference_logits_are_refused_before_a_tool_reads_them(tmp_path, tools, demo_model, capsys,
                                                                        damage, says):
    from orchestrator.cli import main

    path = small_recipe(tmp_path, demo_model, name="logits", weights=("Q8_0",), bench=False,
                        pairs=(("f16", "f16"),), chunks=2)
    ws = tmp_path / "ws"
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 0
    (logits,) = (ws / "artifacts" / "logits").glob("*.kld")
    logits.write_bytes(damage(logits.read_bytes()))
    before = logits.read_bytes()
    jobs = Store(ws / "store.sqlite").db.execute("SELECT count(*), max(finished_at) FROM jobs").fetchone()
    capsys.readouterr()
    small_recipe(tmp_path, demo_model, name="logits", weights=("Q8_0",), bench=False,
                 pairs=(("f16", "f16"), ("q8_0", "q8_0")), chunks=2)  # a new cell reads the kept logits
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith(f"quantsweep: error: {logits}: {says}"), err
    assert logits.read_bytes() == before  # left as it is
    assert Store(ws / "store.sqlite").db.execute("SELECT count(*), max(finished_at) FROM jobs").fetchone() == jobs


def test_a_token_never_reaches_a_log_the_store_a_report_or_an_export(tmp_path, tools, demo_model, monkeypatch):
    """A Hugging Face token in the environment (as a user running a gated model has it) is grepped for in
    every file a sweep, its report and its exports write."""
    from orchestrator.cli import main

    token = "hf_quantsweepTESTtoken0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", token)
    path = small_recipe(tmp_path, demo_model, name="secret", weights=("Q8_0",), pairs=(("f16", "f16"),), chunks=2)
    ws = tmp_path / "ws"
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 0
    assert main(["report", "secret", "--workspace", str(ws), "--out", str(tmp_path / "report")]) == 0
    for fmt in ("csv", "jsonl", "parquet"):
        assert main(["export", "--workspace", str(ws), "--format", fmt, "-o", str(tmp_path / f"cells.{fmt}")]) == 0
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 20 and any(p.suffix == ".sqlite" for p in files) and any("logs" in p.parts for p in files)
    leaked = [p for p in files if token.encode() in p.read_bytes()]
    assert leaked == []
