"""Guards the coordinator and its executors apply before any tool runs."""

from collections import namedtuple

import pytest

from orchestrator.errors import DiskSpaceError
from orchestrator.execute import local
from orchestrator.execute.coordinator import Coordinator
from orchestrator.results.store import Store
from orchestrator.workspace import Workspace

from .helpers import build


def test_refuses_a_reference_run_that_cannot_fit(tmp_path, monkeypatch):
    p = build(tmp_path)
    ws = Workspace(tmp_path / "ws")
    r = Coordinator(p, ws, Store(ws.store_path), tc=None, quiet=True)
    need = p.disk_bytes(j.key for j in p.jobs)  # the models count, not only the logits
    assert need > p.logits_bytes() + sum(j.params.out_bytes for j in p.of_kind("quantize")) * 0.99
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(local.shutil, "disk_usage", lambda _: usage(10 * need, 9 * need, need * 0.9))
    with pytest.raises(DiskSpaceError, match=r"this run writes about [\d,]+ MiB \(models [\d,]+ MiB, reference "
                                             r"logits [\d,]+ MiB\)"):
        local.check_disk(r, list(p.jobs))
    monkeypatch.setattr(local.shutil, "disk_usage", lambda _: usage(10 * need, 0, 2 * need))
    local.check_disk(r, list(p.jobs))  # fits: no error


def test_out_of_memory_is_requeued_once_with_the_device_alone(tmp_path):
    from orchestrator.execute import devices
    from orchestrator.execute.coordinator import Summary
    from orchestrator.execute.executor import Finished, Started
    from orchestrator.execute.scheduler import Device
    from orchestrator.jobs.spec import Outcome

    p = build(tmp_path)
    ws = Workspace(tmp_path / "ws")
    gpu = devices.Found(Device("GPU-0", "H100", 80 * 2**30, 80 * 2**30, "cuda"), 0, "nvml")
    r = Coordinator(p, ws, Store(ws.store_path), tc=None, quiet=True, found=[gpu, devices.find()[-1]])
    job = p.of_kind("kld")[0]
    r._results[job.params.base] = {"ppl_base": 10.0}
    spec = r.spec(job)
    # the test model carries no architecture keys: its size is unknown, so it would hold the GPU alone
    assert spec.resources.exclusive and spec.resources.threads == 0  # and a GPU job leaves the CPU alone
    spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"exclusive": False,
                                                                                   "device_bytes": 2**30})})
    r._specs[job.key] = spec
    oom = Outcome(key=job.key, ok=False, reason="out of memory: cudaMalloc failed", out_of_memory=True)
    r.open, summary = {job.key: job}, Summary()
    r._record(Finished(Started(job.key, "GPU-0", spec, on_device=True), oom), summary)
    assert r.open == {job.key: job} and r.spec(job).resources.exclusive and job.key not in r.failed
    r._record(Finished(Started(job.key, "GPU-0", r.spec(job), on_device=True), oom), summary)
    assert r.failed[job.key].startswith("out of memory") and r.store.job(job.key)["status"] == "failed"
    assert r.open == {}
