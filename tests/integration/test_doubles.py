"""The real runner and scheduler on a simulated 2-GPU box, with tool doubles (tests/doubles.py) that
last a set time, share a simulated GPU's speed, print recorded real output and write real-shaped
artifacts. What a 2-GPU box must get: both GPUs used, each job pinned to one, at most two jobs on a
device, a bench alone on its device and never beside a quantization, every result judged and recorded."""

from pathlib import Path

import pytest

from orchestrator.results.store import Store

from .. import doubles

REPO = Path(__file__).parents[2]
pytestmark = pytest.mark.integration
SECONDS = {"reference": 0.05, "quantize": 0.15, "base": 0.3, "kld": 0.25, "bench": 0.1}


def _overlap(a, b):
    return a[2] < b[3] and b[2] < a[3]


def test_two_simulated_gpus_are_both_used_within_the_rules(tools, tmp_path):
    # the gpu.yaml matrix, its logits cut to 4 chunks: the disk check then asks 0.4 GiB, not 5.3
    recipe = tmp_path / "gpu.yaml"
    text = (REPO / "recipes" / "gpu.yaml").read_text()
    recipe.write_text(text.replace("  ctx: 2048\n", "  ctx: 2048\n  chunks: 4\n"))
    sweep = doubles.Sweep(recipe, tmp_path / "box", 2, SECONDS)
    assert sweep.plan.of_kind("base")[0].params.n_chunk == 4
    summary = sweep.run()
    assert summary.jobs_run == len(sweep.plan.jobs) == 79 and not summary.failed
    spans = sweep.spans()
    gpu = [s for s in spans if s[1] != "cpu"]
    assert {s[1] for s in gpu} == {"GPU-sim-0", "GPU-sim-1"}                  # pinned, and both used
    assert {s[0] for s in spans if s[1] == "cpu"} == {"reference", "quantize"}  # the host's jobs see no GPU
    for s in gpu:
        at_start = [t for t in gpu if t is not s and t[1] == s[1] and t[2] <= s[2] < t[3]]
        assert len(at_start) <= 1, s                                           # two jobs per device at most
        if s[0] == "bench":
            assert not any(_overlap(s, t) for t in gpu if t is not s and t[1] == s[1]), s  # alone on its device
            assert not any(_overlap(s, q) for q in spans if q[0] in ("reference", "quantize")), s
    assert any(_overlap(a, b) for a in gpu for b in gpu if a[1] != b[1])       # the GPUs worked at once
    statuses = Store(sweep.ws.store_path).job_statuses({j.key: j for j in sweep.plan.jobs})
    assert list(statuses.values()).count("done") == 79
    assert sweep.run().jobs_run == 0                                           # resumed: nothing runs again
