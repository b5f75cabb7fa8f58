"""What a publisher met on a new model: the small items (exit codes, export names and integers, sizes)."""

import json

import pytest

from orchestrator import memory
from orchestrator.cli import main


def _imported(tmp_path, fixture_text):
    log = tmp_path / "kld.log"
    log.write_text(fixture_text("ppl_kld.stderr") + fixture_text("ppl_kld.stdout"))
    ws = tmp_path / "ws"
    assert main(["import", str(log), "--workspace", str(ws), "--name", "r"]) == 0
    return ws


def test_export_of_an_unknown_name_says_so(tmp_path, fixture_text, capsys):
    ws = _imported(tmp_path, fixture_text)
    capsys.readouterr()
    assert main(["export", "--workspace", str(ws), "--name", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"quantsweep: error: --name 'nosuch': no such run in {ws}; known: r"


def test_integers_stay_integers_in_every_export(tmp_path, fixture_text, capsys):
    ws = _imported(tmp_path, fixture_text)
    capsys.readouterr()
    assert main(["export", "--workspace", str(ws), "--format", "jsonl"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["ctx"] == 128 and isinstance(row["ctx"], int) and isinstance(row["n_chunks"], int)
    assert main(["export", "--workspace", str(ws), "--format", "csv"]) == 0
    header, first = capsys.readouterr().out.splitlines()[:2]
    cols = dict(zip(header.split(","), first.split(",")))
    assert cols['"ctx"'] == "128"


@pytest.mark.parametrize("text, gib", [("24G", 24.0), ("24", 24.0), ("24GiB", 24.0), ("24 g", 24.0),
                                       ("24GB", 24e9 / 2**30), ("512M", 0.5)])
def test_sizes_a_card_is_sold_with(text, gib):
    assert memory.parse_size(text) == pytest.approx(gib * 2**30)


def test_a_busy_workspace_exits_3(tmp_path, fixture_text, capsys):
    from orchestrator.workspace import Workspace

    ws = _imported(tmp_path, fixture_text)
    with Workspace(ws).lock():
        assert main(["import", str(tmp_path / "kld.log"), "--workspace", str(ws)]) == 3
    assert "is in use by another quantsweep run" in capsys.readouterr().err
