"""Long contexts: the host memory a llama-perplexity run holds (its logits grow with ctx · n_vocab) is known
before it starts, checked against what the real tools took, and a run the machine cannot hold is refused in
one line before any tool runs."""

import pytest

from orchestrator import jobs as jobkinds
from orchestrator.cli import main
from orchestrator.execute import devices
from orchestrator.inputs import prepare
from orchestrator.plan import planner
from orchestrator.results.store import Store
from orchestrator.tools import toolchain
from orchestrator.workspace import Workspace

from ..helpers import small_recipe

pytestmark = pytest.mark.integration


def test_the_pre_flight_figure_is_what_the_tools_really_hold(demo_model, tmp_path):
    recipe = small_recipe(tmp_path, demo_model, name="long", ctx=4096, chunks=1, weights=("Q8_0",),
                          pairs=(("f16", "f16"),), bench=False)
    recipe.write_text(recipe.read_text().replace("batch: 512", "batch: 2048"))
    ws = tmp_path / "ws"
    assert main(["run", str(recipe), "-w", str(ws), "-q"]) == 0
    plan = planner.build(prepare.inputs(recipe, Workspace(ws), toolchain.find(), fetch=False))
    store = Store(ws / "store.sqlite")
    checked = 0
    for job in plan.jobs:
        if job.kind in ("base", "kld"):
            peak = store.job(job.key)["result"]["peak_rss_bytes"]  # the tool's VmHWM, from wait4
            estimate = jobkinds.kind(job.kind).host_bytes(job, plan, {}, True)
            assert 0.95 <= peak / estimate <= 1.02, (job.label, peak, estimate)
            checked += 1
    assert checked == 2


def test_a_run_the_machine_cannot_hold_is_refused_in_one_line_before_any_tool(demo_model, tmp_path, monkeypatch,
                                                                              capsys):
    recipe = small_recipe(tmp_path, demo_model, name="toolong", ctx=8192, chunks=1, weights=("Q8_0",),
                          pairs=(("f16", "f16"),), bench=False)
    ws = tmp_path / "ws"
    monkeypatch.setattr(devices, "host_memory", lambda: (4 << 30, 1 << 30))  # a box with 1 GiB available
    assert main(["plan", str(recipe), "-w", str(ws)]) == 0
    out = capsys.readouterr().out
    assert "host memory: the largest run, reference logits c=8192, holds ≈2.16 GiB (the model on the CPU); " in out
    assert "1.00 GiB available — DOES NOT FIT: lower evaluation.ctx or evaluation.batch" in out
    assert main(["run", str(recipe), "-w", str(ws)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("quantsweep: error: reference logits c=8192 would hold ≈2.16 GiB")
    assert "(its logits at ctx 8192, with the model on the CPU); this machine has 1.00 GiB available of 4.00 GiB" \
        in err[-1]
    assert Store(ws / "store.sqlite").done_jobs("reference") == []  # no tool ran
