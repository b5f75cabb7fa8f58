"""`run --ray` on a real Ray cluster of three nodes on this machine (ray.cluster_utils.Cluster: a head and
two workers, all on 127.0.0.1), with the real tools on the demo model: the numbers equal a local run's,
a node removed mid-sweep loses nothing, a re-run runs nothing. Skipped without Ray (`pip install
'quantsweep[ray]'`; the dev extra has it)."""

import json
import os
import struct
import threading
import time
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.results.store import Store

from ..helpers import small_recipe, tools_running_on

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'quantsweep[ray]'")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from ray.cluster_utils import Cluster

    # every address on the loopback: without this Ray advertises the host's first non-loopback IP
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # for the processes Ray starts
    mp.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", False)  # for this one, which read it at import
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    assert os.environ["RAY_AUTH_MODE"] == "token"  # with a token file of the suite's own (tests/conftest.py)
    users = Path.home() / ".ray" / "auth_token"
    before = users.stat().st_mtime_ns if users.exists() else None
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1",
                                                       "include_dashboard": False})
    workers = [c.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers, tmp_path_factory.mktemp("nodes")
    ray.shutdown()
    c.shutdown()
    mp.undo()
    assert (users.stat().st_mtime_ns if users.exists() else None) == before, "the user's ~/.ray/auth_token was written"


def _rows(ws: Path, name: str) -> list[tuple]:
    df = Store(ws / "store.sqlite").results(name)
    df = df[df.measurement == "kld"]
    cols = ["cell_id", "status", "kld_mean", "kld_mean_err", "ppl_q", "ppl_base", "same_top", "kld_p99", "file_bytes"]
    return sorted(map(tuple, df[cols].astype(str).values.tolist()))


def _run(recipe, ws, c, nodes, *more) -> int:
    return main(["run", str(recipe), "-w", str(ws), "-q", "--ray", c.address, "--ray-node-dir", str(nodes), *more])


def test_a_sweep_on_three_nodes_equals_a_local_run_and_a_rerun_runs_nothing(cluster, demo_model, tmp_path, capsys):
    c, _, nodes = cluster
    recipe = small_recipe(tmp_path, demo_model, name="rayed", weights=("Q8_0", "Q4_K_M", "Q2_K"), bench=True)
    ws = tmp_path / "ws"
    assert _run(recipe, ws, c, nodes) == 0
    state = json.loads((ws / "status.json").read_text())
    assert state["backend"] == "ray" and state["state"] == "done" and state["finished"] == state["to_run"] == 17
    assert state["failed"] == 0
    # node-local: each weights quant stayed on one node, and the three nodes each had one
    assert sorted(len(n["weights"]) for n in state["nodes"]) == [1, 1, 1]
    assert {w for n in state["nodes"] for w in n["weights"]} == {"Q8_0", "Q4_K_M", "Q2_K"}
    # the reference logits were made on each node beside the KLD jobs that read them, never copied
    for n in state["nodes"]:
        root = Path(nodes) / f"node-{n['node'][:12]}"
        assert len(list((root / "artifacts" / "logits").glob("*.kld"))) == 1, n
        assert len(list((root / "artifacts" / "models").glob("*.gguf"))) == 2, n  # the reference and its quant
    assert state["result_bytes"]["kld"]["back"] / state["result_bytes"]["kld"]["tasks"] < 64 * 1024

    local = tmp_path / "local"
    assert main(["run", str(recipe), "-w", str(local), "-q"]) == 0
    assert _rows(ws, "rayed") == _rows(local, "rayed")  # the same numbers, to every digit llama.cpp printed
    # each row names the node that measured it (its machine is the provenance); a local row names none
    nodes_of = {json.loads(x).get("node") for x in Store(ws / "store.sqlite").results("rayed").extra_json}
    assert len(nodes_of) == 3 and all(n and n.endswith(")") for n in nodes_of)
    assert {json.loads(x if isinstance(x, str) else "{}").get("node")
            for x in Store(local / "store.sqlite").results("rayed").extra_json} \
        == {None}

    capsys.readouterr()
    assert main(["status", "-w", str(ws)]) == 0
    first = capsys.readouterr().out
    assert "rayed: done (node-local); 17/17 jobs done (0 cached)" in first
    assert first.count("done, 0 failed; weights") == 3  # each node: what it did, its weights quant
    assert _run(recipe, ws, c, nodes) == 0
    assert "0 jobs run, 17 cached" in capsys.readouterr().out
    assert main(["status", "-w", str(ws)]) == 0
    out = capsys.readouterr().out
    assert "rayed: done (node-local); 17/17 jobs done (17 cached)" in out and "weights" not in out  # ran nothing
    assert main(["plan", str(recipe), "-w", str(ws), "--ray", c.address]) == 0
    out = capsys.readouterr().out
    assert "ray, node-local on 3 nodes: 3 weights quants on 3 of them" in out
    assert "crossing the network: no artifact" in out

    # the guards of a local run run on the cluster too, before any tool starts: a node's logits file that
    # is another model's is refused for the new cells that would read it, named, and left as it is
    logits = sorted(Path(nodes).glob("node-*/artifacts/logits/*.kld"))[0]
    kept = logits.read_bytes()
    logits.write_bytes(kept[:12] + struct.pack("<i", 1234) + kept[16:])
    more = small_recipe(tmp_path, demo_model, name="rayed2", weights=("Q8_0", "Q4_K_M", "Q2_K"), bench=False,
                        pairs=(("q8_0", "q8_0"),))
    try:
        assert _run(more, ws, c, nodes) == 2
        err = capsys.readouterr().err
        assert str(logits) in err and "another model's logits" in err and "not used" in err
        assert logits.read_bytes()[16:] == kept[16:]
    finally:
        logits.write_bytes(kept)


def test_a_node_lost_mid_sweep_loses_nothing(cluster, demo_model, tmp_path, capfd):
    c, workers, nodes = cluster
    recipe = small_recipe(tmp_path, demo_model, name="lossy", weights=("Q8_0", "Q4_K_M", "Q2_K"), bench=False,
                          chunks=4)
    ws = tmp_path / "ws"
    rc = {}
    t = threading.Thread(target=lambda: rc.setdefault("rc", _run(recipe, ws, c, nodes)))
    t.start()
    victim, most_running, queued = None, 0, []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and t.is_alive():
        time.sleep(0.2)
        try:
            state = json.loads((ws / "status.json").read_text())
        except (OSError, ValueError):
            continue
        most_running = max([most_running] + [len(n["running"]) for n in state["nodes"]])
        queued += [q for n in state["nodes"] for q in n["queued"]]
        ids = {w.node_id: w for w in workers if w in c.worker_nodes}
        busy = [n for n in state["nodes"] if n["node"] in ids and n["running"] and n["done"] >= 1]
        if busy and victim is None:
            victim = ids[busy[0]["node"]]
            c.remove_node(victim)
    t.join(600)
    assert victim is not None, "no worker node was ever busy"
    # 1-CPU nodes run one job at a time (each takes the node's cores): what else was sent there is queued
    assert most_running == 1 and queued
    assert rc["rc"] == 0
    state = json.loads((ws / "status.json").read_text())
    assert state["finished"] == state["to_run"] and state["failed"] == 0
    assert len(state["nodes"]) == 2 and victim.node_id not in {n["node"] for n in state["nodes"]}
    assert [n["node"] for n in state["lost"]] == [victim.node_id] and state["lost"][0]["moved"]
    assert main(["status", "-w", str(ws)]) == 0  # the lost node is in the status, with where its work went
    assert "state-dump" not in capfd.readouterr().err  # Ray's own lines went to the workspace's log folder
    assert (ws / "logs" / "ray.log").exists()
    local = tmp_path / "local"
    assert main(["run", str(recipe), "-w", str(local), "-q"]) == 0
    assert _rows(ws, "lossy") == _rows(local, "lossy")
    c.add_node(num_cpus=1, node_ip_address="127.0.0.1")  # for any test after this one


def test_without_ray_installed_the_line_says_how_to_get_it(monkeypatch, tmp_path, demo_model, capsys):
    import builtins

    real = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    recipe = small_recipe(tmp_path, demo_model, name="noray", weights=("Q8_0",), bench=False)
    assert main(["run", str(recipe), "-w", str(tmp_path / "ws"), "--ray", "auto"]) == 2
    assert "pip install 'quantsweep[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "ws" / "store.sqlite").exists()


def test_with_a_shared_folder_each_artifact_is_made_once_whichever_node_runs_it(cluster, demo_model, tmp_path):
    c, _, nodes = cluster
    recipe = small_recipe(tmp_path, demo_model, name="shared", weights=("Q8_0", "Q2_K"), bench=False,
                          pairs=(("f16", "f16"),))
    ws, shared = tmp_path / "ws", tmp_path / "nfs"
    assert _run(recipe, ws, c, nodes, "--ray-shared", str(shared)) == 0
    state = json.loads((ws / "status.json").read_text())
    assert state["mode"] == f"shared {shared}" and state["finished"] == state["to_run"] == 6
    assert sum(n["done"] for n in state["nodes"]) == 6  # counted on the node Ray chose for each
    assert len(list((shared / "artifacts" / "logits").glob("*.kld"))) == 1  # one base run for the cluster
    assert len(list((shared / "artifacts" / "models").glob("*.gguf"))) == 3
    df = Store(ws / "store.sqlite").results("shared")
    assert (df[df.measurement == "kld"].status == "ok").sum() == 2


def test_ctrl_c_cancels_the_cluster_s_tasks_and_their_tools_die(cluster, demo_model, tmp_path):
    import signal
    import subprocess
    import sys

    c, _, _ = cluster
    nodes = tmp_path / "nodes"  # this test's own: every job really runs
    recipe = small_recipe(tmp_path, demo_model, name="stopped", weights=("Q8_0", "Q4_K_M", "Q2_K"), bench=False,
                          chunks=8)
    ws = tmp_path / "ws"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(recipe), "-w", str(ws), "-q",
                             "--ray", c.address, "--ray-node-dir", str(nodes)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not tools_running_on(nodes) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert tools_running_on(nodes), "no tool ever ran on the cluster"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) != 0
    deadline = time.monotonic() + 30
    while tools_running_on(nodes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tools_running_on(nodes) == []  # cancelled on the nodes, not left running there
    done = Store(ws / "store.sqlite").db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    assert done < 11  # stopped before the end; what finished is recorded and a re-run resumes from it


def test_a_client_without_the_cluster_s_token_is_told_so_in_one_line(cluster, demo_model, tmp_path):
    import subprocess
    import sys

    from ..helpers import ray_token

    c, _, _ = cluster
    recipe = small_recipe(tmp_path, demo_model, name="tokenless", weights=("Q8_0",), bench=False)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **ray_token(tmp_path)}  # another token
    res = subprocess.run([sys.executable, "-m", "orchestrator.cli", "plan", str(recipe), "-w", str(tmp_path / "ws"),
                          "--ray", c.address], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith(f"quantsweep: error: --ray {c.address}: the cluster refused this client's "
                                "authentication token (none, or another): set RAY_AUTH_MODE=token and "
                                "RAY_AUTH_TOKEN_PATH")
    assert len(lines) <= 3, res.stderr  # not Ray's dozen lines of warnings
