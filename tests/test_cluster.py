"""The Ray coordinator's decisions that need no cluster: each job's resources as a Ray task (GPU fractions
from the memory ledger, a bench's whole GPU and node), and which weights quants stay together."""

import pytest

from orchestrator.execute import scheduler
from orchestrator.execute.cluster import SHARED, Node, RayExecutor
from orchestrator.jobs.spec import JobSpec, Resources

pytest.importorskip("ray", reason="Ray is not installed: pip install 'quantsweep[ray]'")

GiB = 2**30
NODE = "abababababababababababababababababababababababababababab"  # a node id as Ray writes them (hex)


def spec(kind, **res):
    return JobSpec(key=f"{kind}-x", kind=kind, label=kind, tool="llama-perplexity", argv=[], timeout_s=60,
                   resources=Resources(**res))


def runner(gpus):
    r = RayExecutor.__new__(RayExecutor)  # the decisions only: no plan, store or cluster
    r.nodes = {NODE: Node(NODE, "box", "/w", gpus, cpus=16)}
    return r


H100 = [{"id": "GPU-1", "name": "H100", "total": 80 * GiB}]


def test_quality_jobs_take_the_share_of_the_gpu_their_memory_needs():
    r = runner(H100)
    small = r._options(spec("kld", where="device", device_bytes=10 * GiB), NODE)
    assert small["num_gpus"] == 0.5 and small["num_cpus"] == 1  # at most SHARE jobs on one GPU
    big = r._options(spec("kld", where="device", device_bytes=60 * GiB), NODE)
    assert big["num_gpus"] == pytest.approx((60 * GiB + scheduler.MARGIN) / (80 * GiB), abs=0.01)
    unknown = r._options(spec("kld", where="device", exclusive=True), NODE)
    assert unknown["num_gpus"] == 1
    # its artifacts are on its node: pinned there, and not retried by Ray elsewhere
    assert small["max_retries"] == 0 and small["scheduling_strategy"].node_id == NODE


def test_a_bench_has_a_gpu_and_its_node_s_cpus_to_itself_and_quantize_a_cpu():
    r = runner(H100)
    bench = r._options(spec("bench", where="device", exclusive=True, quiet_host=True), NODE)
    assert bench["num_gpus"] == 1 and bench["num_cpus"] == 16
    quant = r._options(spec("quantize", where="cpu", threads=8), NODE)
    assert quant["num_gpus"] == 0 and quant["num_cpus"] == 1


def test_on_a_shared_folder_ray_places_and_retries_and_gpus_of_unknown_size_are_shared_by_two():
    r = runner([{"id": "0", "name": "logical", "total": 0}])
    opts = r._options(spec("kld", where="device", device_bytes=GiB), SHARED)
    assert opts["num_gpus"] == 1 / scheduler.SHARE and opts["max_retries"] > 0
    assert "scheduling_strategy" not in opts
    assert r._options(spec("kld", where="device", device_bytes=GiB), NODE)["num_gpus"] == 0.5


def test_on_a_node_without_gpus_each_job_has_the_node_s_cores_as_its_tool_uses_them_all():
    r = runner([])
    for s in (spec("kld", where="device", device_bytes=GiB), spec("quantize", where="cpu", threads=8)):
        opts = r._options(s, NODE)
        assert opts["num_cpus"] == 16 and opts["num_gpus"] == 0


def test_the_plan_says_where_the_data_is_and_what_crosses_the_network(tmp_path):
    from orchestrator.execute.ray_nodes import placement_lines

    from .helpers import build

    p = build(tmp_path, weights="[Q8_0, Q4_K_M, Q2_K]")
    local = placement_lines(p, 2, None)
    assert local[0].startswith("ray, node-local on 2 nodes: 3 weights quants on 2 of them")
    assert "run on each of those 2 nodes (1 more time(s) than on one box)" in local[1]
    assert "crossing the network: no artifact; the job specs and results" in local[2]
    one = placement_lines(p, 1, None)
    assert len(one) == 2 and "no artifact" in one[1]
    shared = placement_lines(p, 4, tmp_path / "nfs")
    assert f"shared {tmp_path / 'nfs'}" in shared[0] and "every artifact is made once" in shared[0]


def test_status_tells_a_node_s_running_jobs_from_those_ray_holds_queued():
    from orchestrator.execute.coordinator import status_text

    s = {"alive": True, "pid": 1, "state": "running", "eta_s": 60, "cached": 0, "finished": 1, "failed": 0,
         "jobs": 6, "to_run": 6, "recipe": "r", "backend": "ray", "address": "127.0.0.1:6379", "mode": "node-local",
         "nodes": [{"node": NODE, "host": "box", "gpus": [], "running": ["kld Q8_0"], "queued": ["bench Q8_0"],
                    "done": 1, "failed": 0, "weights": ["Q8_0"]},
                   {"node": NODE.replace("a", "c"), "host": "box2", "gpus": [], "running": [], "queued": [],
                    "done": 0, "failed": 0, "weights": []}]}
    lines = status_text(s)
    assert lines[1].endswith("; weights Q8_0; running: kld Q8_0; queued: bench Q8_0")
    assert lines[2].endswith("0 done, 0 failed; weights —")
    s["alive"] = False  # a run that ended shows neither
    assert all("running:" not in x and "queued:" not in x for x in status_text(s))
