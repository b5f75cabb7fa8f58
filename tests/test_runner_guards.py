"""Guards the runner applies before any tool runs."""

from collections import namedtuple

import pytest

from orchestrator import runner as runner_mod
from orchestrator.errors import DiskSpaceError
from orchestrator.runner import Runner
from orchestrator.store import Store
from orchestrator.workspace import Workspace

from .test_plan import build


def test_refuses_a_reference_run_that_cannot_fit(tmp_path, monkeypatch):
    p = build(tmp_path)
    ws = Workspace(tmp_path / "ws")
    r = Runner(p, ws, Store(ws.store_path), tc=None, quiet=True)
    need = p.logits_bytes()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(runner_mod.shutil, "disk_usage", lambda _: usage(10 * need, 9 * need, need // 2))
    with pytest.raises(DiskSpaceError, match="reference logits need"):
        r._check_disk(list(p.jobs))
    monkeypatch.setattr(runner_mod.shutil, "disk_usage", lambda _: usage(10 * need, 0, 2 * need))
    r._check_disk(list(p.jobs))  # fits: no error
