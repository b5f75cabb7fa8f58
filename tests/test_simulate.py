"""The schedule preview: the real scheduler on a clock. Sharing a device shares its speed."""

from orchestrator.plan import simulate
from orchestrator.plan.graph import Job

from .helpers import box, spec


def _jobs():
    # base (4 s) unblocks two KLDs (2 s each); a quantize (3 s) on the CPU beside them
    return [Job("q", "quantize", "q"), Job("base", "base", "base"), Job("k1", "kld", "k1", ("base", "q")),
            Job("k2", "kld", "k2", ("base",))]


SECS = {"q": 3.0, "base": 4.0, "k1": 2.0, "k2": 2.0}
SPECS = {"q": spec("q", "quantize", "cpu", threads=8), "base": spec("base", "base", gib=4),
         "k1": spec("k1", gib=2), "k2": spec("k2", gib=2)}


def test_one_gpu_shares_its_speed_and_the_cpu_works_beside_it():
    s = simulate.run(_jobs(), lambda j: SPECS[j.key], box(1), lambda sp: SECS[sp.key])
    assert s.slots["q"].device is None and (s.slots["q"].start, s.slots["q"].end) == (0.0, 3.0)
    assert (s.slots["base"].start, s.slots["base"].end) == (0.0, 4.0)
    # both KLDs start at 4 on the one GPU and share it: each takes 4 s instead of 2
    assert (s.slots["k1"].start, s.slots["k1"].end, s.slots["k2"].end) == (4.0, 8.0, 8.0)
    assert s.makespan == 8.0 == simulate.lower_bound(_jobs(), lambda j: SECS[j.key], 1, lambda j: j.kind != "quantize")
    assert s.busy("GPU-0") == 1.0


def test_two_gpus_run_the_klds_side_by_side():
    s = simulate.run(_jobs(), lambda j: SPECS[j.key], box(2), lambda sp: SECS[sp.key])
    assert {s.slots["k1"].device, s.slots["k2"].device} == {"GPU-0", "GPU-1"} and s.makespan == 6.0


def test_lower_bound_counts_the_work_that_cannot_start_early():
    # two GPUs; the KLDs (2 s each) wait for the base (4 s): total work ÷ slots says 4, but from t = 4
    # on 4 s of KLD remain for 2 slots, so nothing ends before 6 (and the chain says 6 too)
    assert simulate.lower_bound(_jobs(), lambda j: SECS[j.key], 2, lambda j: j.kind != "quantize") == 6.0
    # 4 KLDs on 2 slots: from t = 4 on, 8 s of work remain: 4 + 8/2 = 8, above the chain's 6
    jobs = [*_jobs(), Job("k3", "kld", "k3", ("base",)), Job("k4", "kld", "k4", ("base",))]
    secs = {**SECS, "k3": 2.0, "k4": 2.0}
    assert simulate.lower_bound(jobs, lambda j: secs[j.key], 2, lambda j: j.kind != "quantize") == 8.0
