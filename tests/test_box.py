"""The laptop's memory of runs on boxes: each run keeps the folder it was started in on its box."""

from orchestrator.execute import remote
from orchestrator.workspace import Workspace


def test_each_run_keeps_its_root_and_a_later_run_goes_on_there(tmp_path):
    ws = Workspace(tmp_path / "ws")
    remote.remember(ws, remote.Box("qsbox", "/home/u/.quantsweep"), "rx", None, "/home/u/.quantsweep/qs/py")
    remote.remember(ws, remote.Box("qsbox", "/data/other"), "rx3", None, "/data/other/qs/py")
    where = {name: box.root for box, name, _ in remote._entries(ws, None, None)}
    assert where == {"rx": "/home/u/.quantsweep", "rx3": "/data/other"}  # the first root's run is still known
    assert remote.remembered_root(ws, "qsbox", "rx") == "/home/u/.quantsweep"
    assert remote.remembered_root(ws, "qsbox", "rx3") == "/data/other"
    assert remote.remembered_root(ws, "qsbox", "new") is None and remote.remembered_root(ws, "other", "rx") is None


def test_a_workspace_of_an_earlier_version_keeps_its_one_root(tmp_path):
    import json

    ws = Workspace(tmp_path / "ws")
    ws.root.mkdir()
    (ws.root / "hosts.json").write_text(json.dumps({"qsbox": {"root": "/r", "recipes": {"rx": {"python": "p"}}}}))
    assert [(b.root, n) for b, n, _ in remote._entries(ws, None, None)] == [("/r", "rx")]
    assert remote.remembered_root(ws, "qsbox", "rx") == "/r"


def test_an_unreachable_box_is_one_line_naming_it_once():
    lines = remote.status_text([{"box": "qsbox", "error": "qsbox: host unreachable (Connection refused)"}])
    assert lines == ["qsbox: host unreachable (Connection refused)"]


def test_status_of_an_unreachable_box_exits_3(tmp_path, monkeypatch, capsys):
    import shutil

    import pytest

    from orchestrator.cli import main

    if shutil.which("ssh") is None:
        pytest.skip("no ssh client here (openssh-client)")
    monkeypatch.setenv("QUANTSWEEP_SSH_ARGS", "-p 1 -o ConnectTimeout=5 -o BatchMode=yes")  # nothing listens
    ws = Workspace(tmp_path / "ws")
    remote.remember(ws, remote.Box("nobody@127.0.0.1", "/r"), "rx", None, "/r/qs/py")
    assert main(["status", "-w", str(ws.root)]) == 3
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("nobody@127.0.0.1: host unreachable") and out[0].count("nobody@") == 1
