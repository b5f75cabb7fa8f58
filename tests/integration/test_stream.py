"""evaluation.logits: stream — the reference run writes into pipes that a gang of KLD runs read, through a
relay that checks what passes: no logits file, one reference run for the gang, the same numbers as against
the file to every printed digit. A side that dies makes every member of its gang a failure row naming
which died; no partner hangs; the sweep goes on; `run` retries that gang.
Real tools on the demo model; the kills come from wrappers around them (`--llama-cpp` of a folder)."""

import os
import time

import pytest

from orchestrator.cli import main
from orchestrator.results.store import Store

from ..helpers import small_recipe

pytestmark = pytest.mark.integration
COLS = ["cell_id", "status", "kld_mean", "kld_mean_err", "ppl_q", "ppl_base", "same_top", "kld_p99", "kld_median",
        "kld_max", "dp_mean", "rms_dp", "n_chunks"]


def _recipe(tmp_path, model, name, mode):
    path = small_recipe(tmp_path, model, name=name, ctx=256, chunks=5, weights=("Q8_0",), bench=False)
    path.write_text(path.read_text().replace("chunks: 5", f"chunks: 5, logits: {mode}"))
    return path


def _kld(ws, name):
    df = Store(ws / "store.sqlite").results(name)
    df = df[df.measurement == "kld"]
    return sorted(map(tuple, df[COLS].astype(str).values.tolist()))


def test_a_streamed_reference_equals_the_file_and_writes_none(demo_model, tmp_path, capsys):
    streamed, filed = tmp_path / "s", tmp_path / "f"
    assert main(["plan", str(_recipe(tmp_path, demo_model, "st", "stream")), "-w", str(streamed)]) == 0
    assert "reference logits c=256: streamed into gangs of KLD runs, no file (logits: stream; 5 chunks, 59.5 MiB " \
           "as a file)" in capsys.readouterr().out
    assert main(["run", str(_recipe(tmp_path, demo_model, "st", "stream")), "-w", str(streamed), "-q"]) == 0
    assert main(["run", str(_recipe(tmp_path, demo_model, "st", "file")), "-w", str(filed), "-q"]) == 0
    got, want = _kld(streamed, "st"), _kld(filed, "st")
    assert got == want and len(got) == 2 and all(r[1] == "ok" for r in got)
    assert not list(streamed.rglob("*.kld")) and list(filed.rglob("*.kld"))  # no logits on disk
    assert Store(streamed / "store.sqlite").done_jobs("base") == []
    # both cells read one reference run: a gang of two, each with the reference run's logs
    jobs = Store(streamed / "store.sqlite").done_jobs("kld")
    assert [j["result"]["gang"] for j in jobs] == [2, 2]
    assert len({j["result"]["feed_s"] for j in jobs}) == 1 and all("  <  " in j["argv"] for j in jobs)
    assert all((streamed / "logs" / j["key"] / "reference.stdout").is_file() for j in jobs)


def _wrapped(tmp_path, tools, flag_env):
    """A tool folder whose llama-perplexity is killed 2 s in, once, when its flag file exists: the writer
    (a reference run: -f) or the reader (a KLD run: --kl-divergence)."""
    folder = tmp_path / "tools"
    folder.mkdir()
    for exe in tools.bin_dir.iterdir():
        if exe.name != "llama-perplexity":
            (folder / exe.name).symlink_to(exe)
    real = tools.bin_dir / "llama-perplexity"
    (folder / "llama-perplexity").write_text(f"""#!/bin/sh
for a in "$@"; do
  case "$a" in -f) side=writer;; --kl-divergence) side=reader;; esac
done
if [ -n "$side" ] && [ -e "{flag_env}.$side" ]; then
  rm -f "{flag_env}.$side"
  exec timeout -s KILL 2 {real} "$@"
fi
exec {real} "$@"
""")
    (folder / "llama-perplexity").chmod(0o755)
    return folder


@pytest.mark.parametrize("side", ["writer", "reader"])
def test_a_side_that_dies_fails_its_gang_naming_it_and_run_retries_that_gang(demo_model, tools, tmp_path, side):
    flag = tmp_path / "kill"
    folder = _wrapped(tmp_path, tools, flag)
    recipe = small_recipe(tmp_path, demo_model, name="dies", ctx=256, chunks=16, weights=("Q8_0",))
    recipe.write_text(recipe.read_text().replace("chunks: 16", "chunks: 16, logits: stream"))
    ws = tmp_path / "ws"
    (tmp_path / f"kill.{side}").touch()
    t0 = time.monotonic()
    assert main(["run", str(recipe), "-w", str(ws), "-q", "--llama-cpp", str(folder)]) == 1
    assert time.monotonic() - t0 < 240  # no partner waited for a side gone
    df = Store(ws / "store.sqlite").results("dies")
    failed = df[df.measurement == "kld"]
    # the gang (the two K/V pairs) failed, every member naming which died; the sweep went on (the benches)
    assert list(failed.status) == ["failed", "failed"] and set(df[df.measurement == "bench"].status) == {"ok"}
    reasons = sorted(failed.reason)
    if side == "writer":
        assert all(r.startswith("the reference run feeding it was killed by SIGKILL") for r in reasons)
    else:
        w = failed.weights.iloc[0]
        assert reasons[0] == "killed by SIGKILL (the host's out-of-memory killer?)"
        assert reasons[1].startswith(f"stopped with its gang: the kld {w} ") and \
            reasons[1].endswith("run on the same streamed reference ended first (killed by SIGKILL)")
    assert not [p for p in (ws / "tmp").iterdir()] and not os.path.exists(f"{flag}.{side}")
    assert not list(ws.rglob("*.kld"))
    # failures of the machine's (a signal, a partner's): the next plain run runs that gang again, and only it
    assert main(["run", str(recipe), "-w", str(ws), "-q", "--llama-cpp", str(folder)]) == 0
    df = Store(ws / "store.sqlite").results("dies")
    assert set(df[df.measurement == "kld"].status) == {"ok"}
    assert Store(ws / "store.sqlite").runs().iloc[-1].n_jobs_run == 2


def test_auto_streams_a_reference_over_max_logits_and_says_why(demo_model, tmp_path, capsys):
    path = _recipe(tmp_path, demo_model, "big", "auto")
    ws = tmp_path / "ws"
    assert main(["plan", str(path), "-w", str(ws)]) == 0
    assert "reference logits c=256: 5 chunks, 59.5 MiB [to run]" in capsys.readouterr().out  # fits: a file
    path.write_text(path.read_text().replace("logits: auto", "logits: auto, max_logits: 50MiB"))
    assert main(["plan", str(path), "-w", str(ws)]) == 0
    assert ("reference logits c=256: streamed into gangs of KLD runs, no file (the file would be 59.5 MiB, over "
            "max_logits 50.0 MiB; 5 chunks, 59.5 MiB as a file)") in capsys.readouterr().out
