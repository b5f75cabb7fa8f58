"""A small real sweep with the real llama.cpp tools on the demo model."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from orchestrator.cli import main
from orchestrator.results.store import Store
from orchestrator.workspace import Workspace

from ..helpers import tools_running_on
from ..helpers import small_recipe

pytestmark = pytest.mark.integration


def _results(ws):
    return Store(ws / "store.sqlite").results()


def test_sweep_numbers_rerun_and_report(tmp_path, tools, demo_model, capsys):
    ws = tmp_path / "ws"
    path = small_recipe(tmp_path, demo_model)
    assert main(["run", str(path), "--workspace", str(ws)]) == 0
    df = _results(ws)
    kld = df[df.measurement == "kld"].set_index(["weights", "type_k", "type_v"])
    assert len(kld) == 4 and (kld.status == "ok").all()
    # the numbers mean something
    assert kld.loc[("Q8_0", "f16", "f16"), "kld_mean"] < kld.loc[("Q2_K", "f16", "f16"), "kld_mean"]
    assert kld.loc[("Q8_0", "f16", "f16"), "same_top"] > kld.loc[("Q8_0", "q4_0", "q4_0"), "same_top"]
    assert kld.loc[("Q8_0", "f16", "f16"), "file_bytes"] > kld.loc[("Q2_K", "f16", "f16"), "file_bytes"]
    assert (kld.toolchain_commit == tools.commit).all()
    bench = df[df.measurement == "bench"]
    assert set(bench.test) == {"pp16", "tg4"} and (bench.ts_mean > 0).all()
    # what the files really are: SmolLM2's rows (576 wide) do not divide into 256-blocks, so Q2_K falls back
    q2 = kld.loc[("Q2_K", "f16", "f16")]
    assert q2.fallback_tensors > 0 and kld.loc[("Q8_0", "f16", "f16"), "fallback_tensors"] == 0
    assert sum(json.loads(q2.tensor_mix_json).values()) == q2.tensor_bytes
    assert set(kld.source_quant) == {"Q4_1"} and "Q4_1" in json.loads(q2.source_tensor_mix_json)
    # `status` from another shell reads the run's status file
    capsys.readouterr()
    assert main(["status", "--workspace", str(ws)]) == 0
    assert capsys.readouterr().out == "local  itest: done; 12/12 jobs done (0 cached), 0 failed this run\n"
    # re-running a finished recipe runs no tool
    capsys.readouterr()
    assert main(["run", str(path), "--workspace", str(ws)]) == 0
    assert " 0 jobs run" in capsys.readouterr().out
    assert Store(ws / "store.sqlite").runs().iloc[-1].n_jobs_run == 0
    # --rerun bench measures the speeds again and nothing else
    assert main(["run", str(path), "--workspace", str(ws), "--rerun", "bench", "-q"]) == 0
    assert " 4 jobs run, " in capsys.readouterr().out
    again = _results(ws)
    assert len(again) == len(df) and (again[again.measurement == "bench"].status == "ok").all()
    assert list(again[again.measurement == "kld"].kld_mean) == list(df[df.measurement == "kld"].kld_mean)
    # plan sees everything cached and no logits left to write
    assert main(["plan", str(path), "--workspace", str(ws)]) == 0
    plan_out = capsys.readouterr().out
    assert "kld                 4 jobs: 4 cached, 0 failed (recorded), 0 to run" in plan_out
    # one name for the reference logits job, in plan as in run
    assert "reference logits    1 jobs: 1 cached" in plan_out and "  base " not in plan_out
    assert "disk: 0.0 MiB to write (models ≈0.0 MiB, reference logits 0.0 MiB)" in plan_out
    # tables from the store alone
    out = tmp_path / "report"
    assert main(["report", "itest", "--workspace", str(ws), "--out", str(out)]) == 0
    md = (out / "README.md").read_text()
    assert "| Q8_0 | f16 | f16 |" in md and "Same top p" in md and tools.commit in md
    assert f"({int(q2.fallback_tensors)} fallbacks)" in md and "The source itself is Q4_1 (its file type" in md
    assert "![Quality vs size (Pareto frontier labelled)](kld_vs_size.png)" in md
    for stem in ("kld_vs_size", "kld_vs_speed", "kld_vs_kv_memory", "profiles"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (out / f"{stem}.svg").read_text()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and 'src="http' not in page and "<table" in page
    card = (out / "model-card.md").read_text()
    assert card.startswith("## Quantization quality") and "| Q2_K | q4_0 | q4_0 |" in card
    cells = pd.read_parquet(out / "cells.parquet")
    assert len(cells) == 4 and cells.kv_bytes.gt(0).all() and cells.pareto.any()
    assert list(pd.read_csv(out / "cells.csv").weights) == list(cells.weights)
    table = pd.read_parquet(out / "kv_table.parquet")
    assert list(table.columns) == list(pd.read_csv(out / "kv_table.csv").columns) and len(table) == 4
    # recommend: a budget that holds every cell, one that holds some, one that holds none
    q8 = kld.loc[("Q8_0", "f16", "f16")]
    capsys.readouterr()
    assert main(["recommend", "itest", "--workspace", str(ws), "--vram", "2GiB", "--ctx", "4096"]) == 0
    text = capsys.readouterr().out
    assert "Verdict: At 4096 tokens on 2.00 GiB: Q8_0 + f16/f16" in text
    vram = f"{int(q8.file_bytes / 2**20) + 150}MiB"  # Q8_0 + f16 cache at 8192 needs ~270 MiB more
    assert main(["recommend", "itest", "--workspace", str(ws), "--vram", vram, "--reserve", "0", "--ctx", "8192"]) == 0
    text = capsys.readouterr().out
    assert "Q8_0 + f16/f16" not in text.split("Verdict:")[1] and "Verdict: At 8192 tokens" in text
    assert main(["recommend", "itest", "--workspace", str(ws), "--vram", "0.1GiB", "--reserve", "0",
                 "--ctx", "4096"]) == 0
    assert "No measured configuration fits 102 MiB at 4096 tokens" in capsys.readouterr().out
    # compare against the same cells measured on code: only differences beyond their ± are flagged
    code = small_recipe(tmp_path, demo_model, name="itest-code", corpus="python-source", bench=False)
    assert main(["run", str(code), "--workspace", str(ws)]) == 0
    capsys.readouterr()
    assert main(["compare", "itest", "itest-code", "--workspace", str(ws)]) == 0
    text = capsys.readouterr().out
    df = _results(ws)
    a = df[(df.recipe == "itest") & (df.measurement == "kld")].set_index(["weights", "type_k", "type_v"])
    b = df[(df.recipe == "itest-code") & (df.measurement == "kld")].set_index(["weights", "type_k", "type_v"])
    for key in a.index:
        d = b.loc[key, "kld_mean"] - a.loc[key, "kld_mean"]
        pmv = 2 * (a.loc[key, "kld_mean_err"] ** 2 + b.loc[key, "kld_mean_err"] ** 2) ** 0.5
        line = next(x for x in text.splitlines() if x.startswith(f"{key[0]} ") and f"{key[1]}/{key[2]}" in x)
        assert (f"{d:+.6f} ± {pmv:.6f} *" in line) == (abs(d) > pmv)


def test_failing_cell_is_recorded_and_sweep_goes_on(tmp_path, tools, demo_model, capsys):
    ws = tmp_path / "ws"
    # iq2_xxs tensors need an imatrix: llama-quantize refuses this weight set, the other must still run
    broken = "{type: Q4_K_M, name: broken, tensor_types: {ffn_down: iq2_xxs}}"
    # a typo'd override pattern: llama-quantize says nothing and quantizes without it
    typo = "{type: Q4_K_M, name: typo, tensor_types: {ffn_dwn: q8_0}}"
    path = small_recipe(tmp_path, demo_model, name="fail", weights=("Q8_0", broken, typo), bench=False,
                        pairs=(("f16", "f16"), ("q8_0", "q8_0")))
    assert main(["run", str(path), "--workspace", str(ws)]) == 1
    out = capsys.readouterr().out
    assert "FAILED quantize broken: this type needs an imatrix" in out
    assert "FAILED quantize typo: tensor_types ['ffn_dwn'] matched no tensor" in out
    df = _results(ws).set_index(["weights", "type_k", "type_v"])
    assert len(df) == 6
    assert (df.loc["Q8_0"].status == "ok").all()
    for label in ("broken", "typo"):
        assert (df.loc[label].status == "failed").all()
        assert df.loc[label].reason.str.contains("upstream failed").all()
    # the report keeps failed cells in the matrix and says why below it
    assert main(["report", "fail", "--workspace", str(ws), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "README.md").read_text()
    assert "| broken | f16 | f16 | failed |" in md and "## Failed cells" in md and "matched no tensor" in md
    # the failure is recorded with its log; a re-run does not repeat it unless asked
    capsys.readouterr()
    assert main(["run", str(path), "--workspace", str(ws)]) == 1
    assert " 0 jobs run" in capsys.readouterr().out


@pytest.mark.parametrize("parallel", ["1", "2"])
def test_killed_run_resumes(tmp_path, tools, demo_model, parallel, capsys):
    ws = tmp_path / "ws"
    path = small_recipe(tmp_path, demo_model, name="kill", bench=False)
    env = {**os.environ, "QUANTSWEEP_WORKSPACE": str(ws)}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(path), "-q", "--parallel", parallel],
                            env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        while time.time() < deadline:  # kill -9 once the first KLD cell is done
            if (ws / "store.sqlite").exists():
                done = Store(ws / "store.sqlite").db.execute(
                    "SELECT count(*) FROM jobs WHERE kind='kld' AND status='done'").fetchone()[0]
                if done >= 1:
                    break
            time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done_before = Store(ws / "store.sqlite").db.execute("SELECT count(*) FROM jobs WHERE status='done'").fetchone()[0]
    assert 1 <= done_before < 8, "killed mid-sweep"
    # `status` from another shell: the run's process is gone, and it says so
    capsys.readouterr()
    assert main(["status", "--workspace", str(ws)]) == 0
    said = capsys.readouterr().out
    assert said.startswith("local  kill: stopped (its process ") and "`quantsweep run` resumes" in said
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 0
    runs = Store(ws / "store.sqlite").runs()
    assert runs.iloc[-1].n_jobs_run == 8 - done_before  # only what was missing
    assert not list((ws / "artifacts").rglob("*.partial"))
    df = _results(ws)
    assert len(df) == 4 and (df.status == "ok").all()
    assert Workspace(ws).exists()
    assert not tools_running_on(ws), "no tool outlives a killed run"


def test_concurrent_sweep_gives_the_sequential_numbers(tmp_path, tools, demo_model):
    path = small_recipe(tmp_path, demo_model, name="conc", bench=False, weights=("Q8_0", "Q4_K_M", "Q2_K"))
    seq, par = tmp_path / "seq", tmp_path / "par"
    assert main(["run", str(path), "--workspace", str(seq), "-q"]) == 0
    assert main(["run", str(path), "--workspace", str(par), "-q", "--parallel", "2"]) == 0
    cols = ["kld_mean", "kld_mean_err", "ppl_q", "same_top", "kld_p99", "file_bytes"]
    a = _results(seq).set_index("cell_id").sort_index()[cols]
    b = _results(par).set_index("cell_id").sort_index()[cols]
    assert len(a) == 6 and a.equals(b)
    run = Store(par / "store.sqlite").runs().iloc[-1]
    assert run.wall_s < run.tool_wall_s, "two jobs at a time: the tools' summed time exceeds the wall time"
    t = max(1, (os.cpu_count() or 2) // 2)
    argvs = [r[0] for r in Store(par / "store.sqlite").db.execute("SELECT argv FROM jobs")]
    assert all(f" -t {t} " in a or a.endswith(f" {t}") for a in argvs), "each of the 2 slots gets half the cores"


def test_imatrix_computed_and_used(tmp_path, tools, demo_model):
    ws = tmp_path / "ws"
    imat = "{type: IQ3_XXS, imatrix: {corpus: python-docs, ctx: 128, chunks: 4}}"
    path = small_recipe(tmp_path, demo_model, name="imat", weights=("Q4_K_M", imat), bench=False,
                        pairs=(("f16", "f16"),))
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 0
    jobs = Store(ws / "store.sqlite").db.execute("SELECT kind, status, argv FROM jobs").fetchall()
    imatrix = [j for j in jobs if j[0] == "imatrix"]
    assert len(imatrix) == 1 and imatrix[0][1] == "done"
    iq3 = [j for j in jobs if j[0] == "quantize" and "IQ3_XXS" in j[2]]
    assert "--imatrix" in iq3[0][2]
    df = _results(ws).set_index("weights")
    # how it was made, with the caveat: this test calibrates on the evaluated text
    assert df.loc["IQ3_XXS", "imatrix"] == "python-docs, ctx 128, 4 chunks; calibrated on the evaluated text"
    assert df.loc["IQ3_XXS", "status"] == "ok" and pd.isna(df.loc["Q4_K_M", "imatrix"])
    assert df.loc["IQ3_XXS", "file_bytes"] < df.loc["Q4_K_M", "file_bytes"]


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, tools, demo_model):
    ws = tmp_path / "ws"
    path = small_recipe(tmp_path, demo_model, name="intr", bench=False)
    env = {**os.environ, "QUANTSWEEP_WORKSPACE": str(ws)}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline:  # interrupt while the reference logits are being written
        if list((ws / "artifacts" / "logits").glob(".*.partial")):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "the next `run` resumes" in err
    assert not list((ws / "artifacts").rglob("*.partial")), "the tool's partial output is removed"
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 0
    assert (_results(ws).status == "ok").sum() == 4
