"""Never a wrong number: what we make is checked before it is used again, a statistic that is not a finite
number is a failure, and bad input or a bad machine ends in one line (tests of the fast, tool-free parts;
tests/integration/test_trust_real.py runs the rest with the real tools)."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import jobs
from orchestrator.jobs import spec as jobspec
from orchestrator.recipe import model as recipe
from orchestrator.execute import worker
from orchestrator.cli import main
from orchestrator.errors import RecipeError, ToolFailed, WorkspaceBusy
from orchestrator.results.store import Store
from orchestrator.tools import perplexity as tp
from orchestrator.workspace import Workspace

from .helpers import build

REPO = Path(__file__).parents[1]


def _kld_run(fixture_text):
    return int(fixture_text("ppl_kld.rc")), fixture_text("ppl_kld.stdout"), fixture_text("ppl_kld.stderr")


# -- 2. a non-finite statistic is a failed job --------------------------------------------------------

@pytest.mark.parametrize("line, value", [("Mean    KLD:   0.053440 ±   0.002969", "Mean    KLD:   nan ±   nan"),
                                          ("Mean PPL(Q)                   :  13.943169 ±   2.545992",
                                           "Mean PPL(Q)                   :  inf ±   nan"),
                                          ("Mean    Δp: -0.797 ± 0.371 %", "Mean    Δp: nan ± nan %")])
def test_a_non_finite_statistic_is_a_failure_not_a_result(fixture_text, line, value):
    rc, out, err = _kld_run(fixture_text)
    base = tp.parse_final(fixture_text("ppl_base.stderr"))[0]
    assert tp.judge_kld(rc, out, err, base)["kld_mean"] == 0.05344  # the recorded run, as it is
    assert line in out
    with pytest.raises(ToolFailed, match="non-finite statistic"):
        tp.judge_kld(rc, out.replace(line, value), err, base)


def test_a_cell_without_a_number_is_never_ranked():
    import pandas as pd

    from orchestrator.report import analysis

    df = pd.DataFrame({"measurement": ["kld", "kld"], "status": ["ok", "ok"], "weights": ["a", "b"],
                       "type_k": ["f16"] * 2, "type_v": ["f16"] * 2, "kld_mean": [0.01, None],
                       "file_bytes": [1, 2], **{c: [None] * 2 for c in ("n_gen", "n_prompt", "n_depth", "test",
                                                                         "ts_mean", "ts_std")}})
    assert list(analysis.cells(df).weights) == ["a"]


# -- 7. import takes the complete statistics block only -------------------------------------------

@pytest.mark.parametrize("cut_after, says", [
    ("Median  KLD:", "incomplete statistics block (no "),
    ("Same top p: 88.889 ±", "incomplete statistics block (no same_top_err"),
    ("Mean    KLD:   0.053440 ±", "incomplete statistics block (no kld_mean_err")])
def test_import_refuses_a_log_cut_short(tmp_path, fixture_text, capsys, cut_after, says):
    text = fixture_text("ppl_kld.stderr") + fixture_text("ppl_kld.stdout")
    log = tmp_path / "cut.log"
    log.write_text(text[:text.index(cut_after) + len(cut_after)])
    assert main(["import", str(log), "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and says in err and str(log) in err
    assert not (tmp_path / "ws" / "store.sqlite").exists()
    whole = tmp_path / "whole.log"
    whole.write_text(text)
    assert main(["import", str(whole), "--workspace", str(tmp_path / "ws")]) == 0


def test_import_of_bench_json_with_nan_is_one_line(tmp_path, fixture_text, capsys):
    text = fixture_text("bench_jsonl.stdout")
    assert '"samples_ns": [' in text
    bad = tmp_path / "bench.jsonl"
    bad.write_text(text.replace('"samples_ns": [', '"samples_ns": [NaN, ', 1))
    assert main(["import", str(bad), "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "record 1" in err and "not a finite number" in err


@pytest.mark.parametrize("args", [["import", "x.log", "--name", "../../escaped"], ["report", "../../escaped"]])
def test_a_run_name_cannot_leave_its_folder(tmp_path, capsys, args):
    (tmp_path / "x.log").write_text("nothing")
    os.chdir(tmp_path)
    assert main(args) == 2
    assert "'../../escaped': use letters, digits" in capsys.readouterr().err
    assert not any(tmp_path.parent.parent.glob("escaped*"))


# -- 6. a recipe cannot make plan run long or big -----------------------------------------------

def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    lines = ["a1: &a1 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(2, 10)]
    for field in ("version: *a9", "evaluation: {ctx: *a9}"):
        path = tmp_path / "bomb.yaml"
        path.write_text("\n".join(lines + ["name: x", field]) + "\n")
        t0 = time.process_time()
        with pytest.raises(RecipeError, match="aliases expand it beyond 20,000 values"):
            recipe.load(path)
        assert time.process_time() - t0 < 5


def test_a_long_value_is_shown_short_in_an_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: x\nmodel: {path: m.gguf}\nweights: [Q8_0]\nevaluation: {ctx: [" + ", ".join(
        ["[1, 2, 3]"] * 500) + "]}\n")
    with pytest.raises(RecipeError) as e:
        recipe.load(path)
    assert len(str(e.value)) < 400


# -- 9. tensor_types patterns by llama-quantize's rules ---------------------------------------------

@pytest.mark.parametrize("pattern, says", [("(?<=blk)ffn_down", "contains '='"), ("ffn_down=x", "contains '='"),
                                           ("(?i)FFN_DOWN", "not in the ECMAScript regex grammar"),
                                           ("(?P<n>ffn)", "not in the ECMAScript regex grammar"),
                                           (r"\Affn", "Python's, not ECMAScript's")])
def test_tensor_type_patterns_llama_quantize_cannot_take_are_refused(tmp_path, pattern, says):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: x\nmodel: {{path: m.gguf}}\nweights: [{{type: Q4_K_M, tensor_types: "
                    f"{{'{pattern}': q8_0}}}}]\n")
    with pytest.raises(RecipeError, match="weights") as e:
        recipe.load(path)
    assert says in str(e.value)
    path.write_text("name: x\nmodel: {path: m.gguf}\nweights: [{type: Q4_K_M, tensor_types: "
                    "{'blk\\.(0|1)\\.ffn_(down|up)': q8_0}}]\n")
    assert recipe.load(path).weights[0].tensor_types


# -- 10. the lock cannot be removed; 8. a workspace that cannot be used --------------------------------

def test_the_lock_is_the_folder_itself(tmp_path):
    ws = Workspace(tmp_path / "ws")
    with ws.lock():
        assert [p.name for p in ws.root.iterdir()] == []  # no lock file to remove
        with pytest.raises(WorkspaceBusy):
            with Workspace(tmp_path / "ws").lock():
                pass
        os.rename(ws.root, tmp_path / "moved")  # a moved workspace keeps its lock
        with pytest.raises(WorkspaceBusy):
            with Workspace(tmp_path / "moved").lock():
                pass
    with Workspace(tmp_path / "moved").lock():
        pass


def test_a_workspace_that_is_a_file_is_one_line(tmp_path, capsys, monkeypatch):
    f = tmp_path / "file"
    f.write_text("x")
    monkeypatch.setenv("QUANTSWEEP_WORKSPACE", str(f))
    for args in (["report", "demo"], ["import", str(f)], ["export"]):
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.splitlines() == [err] and f"$QUANTSWEEP_WORKSPACE {f} is a file" in err, err


@pytest.fixture
def mounted(tmp_path):
    """A tmpfs of our own (root only): a real read-only or full file system."""
    made = []

    def mount(name: str, opts: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here (not root, or no mount namespace rights)")
        made.append(d)
        return d
    yield mount
    for d in made:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_read_only_workspace_is_one_line_exit_3(tmp_path, mounted, capsys, fixture_text):
    ro = mounted("ro", "ro,size=1m")
    log = tmp_path / "kld.log"
    log.write_text(fixture_text("ppl_kld.stderr") + fixture_text("ppl_kld.stdout"))
    assert main(["import", str(log), "--workspace", str(ro)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "cannot be written: Read-only file system" in err


def _fill(path: Path) -> None:
    """Write until the disk is full (leaving less than one 4 KiB block)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 16, 1 << 12, 1 << 9):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)


def test_a_full_disk_under_report_and_export_is_named_and_keeps_the_old_report(tmp_path, mounted, capsys,
                                                                                 fixture_text):
    log = tmp_path / "kld.log"
    log.write_text(fixture_text("ppl_kld.stderr") + fixture_text("ppl_kld.stdout"))
    ws = tmp_path / "ws"
    assert main(["import", str(log), "--workspace", str(ws), "--name", "r"]) == 0
    small = mounted("small", "size=2m")
    out = small / "report"
    assert main(["report", "r", "--workspace", str(ws), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _fill(small / "filler")
    capsys.readouterr()
    assert main(["report", "r", "--workspace", str(ws), "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and f"disk full: {small} (tmpfs" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the last complete report, untouched
    assert not [p for p in small.iterdir() if p.name.endswith(".partial")]
    assert main(["export", "--workspace", str(ws), "--format", "csv", "-o", str(small / "cells.csv")]) == 3
    assert "disk full" in capsys.readouterr().err


# -- 12. smaller ---------------------------------------------------------------------------------------

def test_a_corpus_that_is_a_fifo_a_device_or_binary_is_named(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 64)
    from orchestrator.errors import InputFileError
    from orchestrator.inputs.hub import text_file

    for corpus, says in ((fifo, "a FIFO, not a file"), (Path("/dev/zero"), "a device, not a file"),
                         (binary, "not text (a binary file beginning b'GGUF')")):
        with pytest.raises(InputFileError) as e:
            text_file(corpus, "corpus")
        assert says in str(e.value), str(e.value)
    assert text_file(REPO / "README.md", "corpus")


def test_weights_of_the_same_content_share_their_jobs_and_each_cell_has_its_row(tmp_path):
    p = build(tmp_path, weights="[Q8_0, {type: Q8_0, name: q8}, Q4_K_M]")
    assert len({j.key for j in p.jobs}) == len(p.jobs)  # progress counts what runs
    assert len(p.of_kind("quantize")) == 2 and len(p.of_kind("kld")) == 2 * 4  # 4 K/V pairs
    assert {j.cell.weights for j in p.measured} == {"Q8_0", "q8", "Q4_K_M"} and len(p.measured) == 3 * 4 * 2


def test_a_model_file_is_named_by_its_type_and_key_not_its_label(tmp_path):
    a = build(tmp_path, weights="[Q8_0, Q4_K_M]")
    b = build(tmp_path, weights="[{type: Q8_0, name: q8}, Q4_K_M]")
    assert a.model_keys["Q8_0"] == b.model_keys["q8"]
    ws = Workspace(tmp_path / "ws")
    key = a.model_keys["Q8_0"]
    spec = jobs.output_ref(next(j for j in b.jobs if j.key == key))
    path = worker.WorkerEnv(tool=str, ws=ws).artifact(spec)
    assert path.name == f"Q8_0-{key}.gguf"
    legacy = path.with_name(f"q8-{key}.gguf")  # as an earlier version named it: taken under the new name
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"GGUF")
    assert worker.WorkerEnv(tool=str, ws=ws).artifact(spec) == path and path.read_bytes() == b"GGUF"
    assert not legacy.exists()


# -- 1. a worker checks what it reads --------------------------------------------------------------

def test_a_worker_refuses_a_damaged_input_and_removes_it(tmp_path):
    ws = Workspace(tmp_path / "ws")
    env = worker.WorkerEnv(tool=lambda name: "/bin/true", ws=ws)
    ref = jobspec.Ref(ref="model", key="quantize-abc", label="Q8_0")
    model = env.artifact(ref)
    model.parent.mkdir(parents=True)
    model.write_bytes(b"GGUF" + b"x" * 1000)
    good = hashlib.sha256(model.read_bytes()).hexdigest()
    spec = jobspec.JobSpec(key="kld-1", kind="kld", label="kld", tool="llama-perplexity",
                           argv=[jobspec.Ref(ref="tool", key="llama-perplexity")], timeout_s=10,
                           resources=jobspec.Resources(where="cpu"),
                           expect=[jobspec.Expect(ref=ref, bytes=1004, sha256=good)])
    worker.check_inputs(spec, env)  # as made: passes
    with open(model, "r+b") as f:  # same size, other bytes
        f.seek(500)
        f.write(b"\x40" * 200)
    out = worker.run(spec, env)
    assert not out.ok and out.machine and out.bad_input == "quantize-abc"
    assert out.reason.startswith(f"input damaged: {model}: its sha256 differs") and not model.exists()
    out = worker.run(spec, env)
    assert out.reason.startswith("input missing: Q8_0-quantize-abc.gguf") and out.machine


@pytest.mark.parametrize("back_end", ["local", "ray"])
def test_a_machine_failure_is_run_again_by_a_plain_run(tmp_path, back_end):
    from orchestrator.execute.cluster import RayExecutor
    from orchestrator.execute.coordinator import Coordinator

    def Runner(*args, **kw):  # one rule for which jobs are open, whichever executor runs them
        return Coordinator(*args, executor=RayExecutor() if back_end == "ray" else None, **kw)

    p = build(tmp_path)
    ws = Workspace(tmp_path / "ws")
    store = Store(ws.store_path)
    ref, q8, q4 = p.of_kind("reference")[0], *p.of_kind("quantize")
    store.record_job(q8.key, "quantize", "failed", reason="disk full: /x", result={"machine": True})
    store.record_job(q4.key, "quantize", "failed", reason="no size summary (rc 1)")
    todo = {j.key for j in Runner(p, ws, store, tc=None, quiet=True).to_run()}
    assert q8.key in todo and q4.key not in todo and ref.key in todo
    todo = {j.key for j in Runner(p, ws, store, tc=None, quiet=True, retry_failed=True).to_run()}
    assert q4.key in todo


def test_a_closed_pipe_ends_quietly_with_status_0():
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "schema"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and err == ""


def test_sigterm_ends_a_command_as_interrupted(tmp_path):
    code = ("import os, signal, sys, time\nfrom orchestrator import cli\n"
            "@cli.app.command('sleepy')\ndef sleepy():\n    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(5)\n"
            "sys.exit(cli.main(['sleepy']))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 128 + 15 and "interrupted" in res.stderr


def test_an_artifact_recorded_before_its_hash_was_is_hashed_before_it_is_read_again(tmp_path):
    """A job's artifact is hashed beside the next tool and its sha256 added to the record; a run stopped in
    between leaves a record without one: the next run hashes the file before anything reads it, and
    checks it against that from then on."""
    from orchestrator.execute.coordinator import Coordinator

    p = build(tmp_path)
    ws = Workspace(tmp_path / "ws")
    store = Store(ws.store_path)
    ref, q8 = p.of_kind("reference")[0], p.of_kind("quantize")[0]
    co = Coordinator(p, ws, store, tc=None, quiet=True)
    path = co.artifact_path(ref.key)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"GGUF" + b"r" * 4000)
    store.record_job(ref.key, "reference", "done", result={"file_bytes": 4004, "quant_mib": 0.1})
    assert ref.key not in {j.key for j in co.to_run()} and q8.key in {j.key for j in co.to_run()}
    assert store.job(ref.key)["result"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_bytes(b"GGUF" + b"R" * 4000)  # damaged since: now found, and made again
    assert ref.key in {j.key for j in co.to_run()} and "sha256 differs" in co.remade[ref.key]
