"""`--json` for scripts: recommend, compare, devices and status give the same answer as their text, as data."""

import json
import shutil

from orchestrator.cli import main

from .helpers import FIXTURES


def _workspace(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    shutil.copyfile(FIXTURES / "stores" / "demo-v3.sqlite", ws / "store.sqlite")
    return ws


def test_recommend_json_is_the_text_answer_as_data(tmp_path, capsys):
    ws = _workspace(tmp_path)
    ask = ["recommend", "demo", "--workspace", str(ws), "--vram", "320MiB", "--reserve", "0", "--ctx", "4096"]
    assert main(ask) == 0
    text = capsys.readouterr().out
    assert main([*ask, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert f"Verdict: {got['verdict']}" in text
    assert got["vram_bytes"] == 320 * 2**20 and got["reserve_bytes"] == 0 and got["ctx"] == 4096
    best = got["best"]
    assert (best["weights"], best["type_k"], best["type_v"]) == ("Q8_0", "q8_0", "q8_0")
    assert best["kld_mean"] == got["cells"][0]["kld_mean"] and isinstance(best["mem_total"], int)
    assert f"{best['kld_mean']:.6f} ± {best['kld_mean_err']:.6f}" in text
    assert all(c["mem_total"] <= got["vram_bytes"] for c in got["cells"])
    assert got["notes"] and all(f"Note: {n}" in text for n in got["notes"])


def test_compare_json_lists_every_cell_with_its_difference(tmp_path, capsys):
    ws = _workspace(tmp_path)
    assert main(["compare", "demo", "demo", "--workspace", str(ws), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["a"] == got["b"] == "demo" and len(got["cells"]) == 18
    assert all(c["in"] == "both" and c["differs"] == "" and c["kld_mean_delta"] == 0 for c in got["cells"])
    assert all(c["kld_mean_delta_err"] > 0 and c["same_top_delta_err"] > 0 for c in got["cells"])


def test_devices_json(capsys):
    import pytest

    from orchestrator.tools import toolchain
    from orchestrator.errors import ToolchainError

    try:
        toolchain.find()
    except ToolchainError:
        pytest.skip("no llama.cpp tools here (`make setup` builds them)")
    assert main(["devices", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    cpu = [d for d in got if d["kind"] == "cpu"]
    assert len(cpu) == 1 and cpu[0]["usable"] is True and cpu[0]["total_bytes"] > 0


def test_status_json_is_the_status_file_with_whether_its_run_lives(tmp_path, capsys):
    import os

    ws = tmp_path / "ws"
    ws.mkdir()
    doc = {"backend": "local", "recipe": "demo", "pid": os.getpid(), "state": "running", "jobs": 21, "cached": 3,
           "to_run": 18, "failed_before": 0, "finished": 5, "failed": 1, "eta_s": 65.0,
           "running": [{"job": "kld Q8_0 K=f16 V=f16 c=256", "device": "cpu", "for_s": 2.5}], "updated": 0}
    (ws / "status.json").write_text(json.dumps(doc))
    assert main(["status", "-w", str(ws)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text == [f"local  demo: running (pid {os.getpid()}); 7/21 jobs done (3 cached), 1 failed this run, "
                    "ETA 1m05s", "  cpu: kld Q8_0 K=f16 V=f16 c=256 (0m02s)"]
    assert main(["status", "-w", str(ws), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["boxes"] == [] and got["local"] == {**doc, "alive": True}
    (ws / "status.json").write_text(json.dumps({**doc, "pid": 2**22 + 1}))  # above Linux's pid_max: gone
    assert main(["status", "-w", str(ws), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["local"]["alive"] is False
