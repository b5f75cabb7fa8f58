"""What each command does, as plain functions the CLI and the tests call."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from orchestrator.recipe import advice, model as recipemod
from orchestrator import jobs as jobkinds
from orchestrator.plan import memory, planner
from orchestrator.inputs import prepare
from orchestrator.tools import toolchain
from orchestrator.errors import FetchError, RecipeError, UsageError
from orchestrator.files import fits_disk
from orchestrator.results.store import Store
from orchestrator.workspace import Workspace


def _fmt_s(s: float) -> str:
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m" if s >= 3600 else f"{int(s // 60)}m{int(s % 60):02d}s"


def _preview(p, statuses: dict, store, found, parallel: int = 1):
    """The schedule of the jobs still to run, simulated with the real scheduler and the per-kind timings
    of earlier runs in the store (or a guess, said as such)."""
    from orchestrator.execute import devices as devmod
    from orchestrator.plan import simulate
    from orchestrator.execute.local import thread_policy

    inv = devmod.inventory(found)
    threads = thread_policy(inv, parallel)
    todo = [j for j in p.jobs if statuses.get(j.key) != "done"]
    seen = store.kind_timings() if store is not None else {}
    upstream = {k: (store.job(k) or {}).get("result", {}) for k, st in statuses.items() if st == "done"} \
        if store is not None else {}
    sched = simulate.run(todo, lambda j: jobkinds.build_spec(j, p, upstream, threads), inv,
                         lambda s: seen.get(s.kind, (jobkinds.kind(s.kind).guess_s, 0))[0])
    guessed = sorted({j.kind for j in todo if j.kind not in seen})
    return sched, inv, guessed, seen


def plan(recipe_path: Path, workspace, llama_cpp, out, devices: str | None = None, parallel: int = 1,
         ray: str | None = None, ray_shared: Path | None = None) -> None:
    """The matrix, what is cached, what runs, the disk it takes and the predicted schedule: one answer,
    as text or JSON."""
    r = recipemod.load(recipe_path)  # a bad recipe stops here, before anything is touched
    prepare.check_local_files(r, recipe_path)
    ws = Workspace(workspace)
    tc = toolchain.find(llama_cpp, r.toolchain)
    try:
        inp = prepare.inputs(recipe_path, ws, tc, fetch=False)
    except FetchError as exc:
        n = len(r.weights) * len(r.cache.expanded()) * len(r.evaluation.contexts)
        out.answer({"recipe": r.name, "cells": n, "inputs_missing": str(exc)}, lambda d: [
            f"{d['recipe']}: {d['cells']} cells; inputs not available yet ({d['inputs_missing']}); "
            "`quantsweep run` fetches them first"])
        return
    p = planner.build(inp)
    store = Store.read_only(ws.store_path) if ws.exists() else None
    statuses = store.job_statuses([j.key for j in p.jobs]) if store is not None else {}
    from orchestrator.execute import devices as devmod

    found = devmod.find(tuple(tc.backends), only=devices)
    sched, inv, guessed, seen = _preview(p, statuses, store, found, parallel)
    to_write = [j.key for j in p.jobs if statuses.get(j.key) != "done"]
    placement = []
    if ray is not None:  # where the data would be on that cluster (nothing is started on it)
        from orchestrator.execute import ray_nodes

        ray_nodes.connect(ray)
        placement = ray_nodes.placement_lines(p, ray_nodes.alive_nodes(), ray_shared)
    shown = {j.kind for j in p.jobs if j.key in sched.slots}
    doc = {
        "recipe": r.name, "cells": [c.id for c in p.cells],
        "shape": {"weights": len(r.weights), "pairs": len(r.cache.expanded()), "contexts": len(r.evaluation.contexts)},
        "model": {"file": inp.source_path.name, "sha256": inp.source_sha, "n_vocab": inp.source_info.n_vocab},
        "reference": r.reference.type, "corpus": inp.corpus.label,
        "toolchain": {"name": tc.title, "commit": tc.commit, "backends": list(tc.backends),
                      "bin_dir": str(tc.bin_dir)},
        "warnings": [w for w in (toolchain.fa_warning(tc, r.cache.expanded()),) if w]
                    + [f"warning: {line}" for line in advice.warnings(inp)],
        "jobs": [{"kind": j.kind, "name": jobkinds.kind(j.kind).title, "job": j.label,
                  "status": statuses.get(j.key, "to run"), "key": j.key,
                  **({"device": sched.slots[j.key].device or "cpu", "start_s": round(sched.slots[j.key].start, 1),
                      "end_s": round(sched.slots[j.key].end, 1)} if j.key in sched.slots else {})}
                 for j in p.jobs],
        "logits": [{"job": j.label, "chunks": j.params.n_chunk, "bytes": j.params.logits_bytes,
                    "chunks_estimated": inp.corpus.sha256 not in inp.corpus_tokens,
                    "status": statuses.get(j.key, "to run")} for j in p.of_kind("base")],
        "streamed": [{"ctx": ctx, **s} for ctx, s in sorted(p.streamed.items())],
        "logits_bytes": p.logits_bytes(),
        "logits_bytes_to_write": sum(j.params.logits_bytes for j in p.of_kind("base") if j.key in to_write),
        "disk_bytes_to_write": p.disk_bytes(to_write),
        "free_bytes": shutil.disk_usage(ws.root if ws.root.exists() else Path.cwd()).free,
        "host_memory": _host_memory(p, to_write, all(f.device.is_host for f in found)),
        "predicted_wall_s": round(sched.makespan, 1), "timings_guessed_for": guessed,
        "timings": {k: {"mean_s": round(seen[k][0], 1), "runs": seen[k][1]} for k in sorted(seen) if k in shown},
        "devices": [{"id": d.id, "jobs": sum(1 for s in sched.slots.values() if s.device == d.id),
                     "busy": sched.busy(d.id)} for d in inv.devices],
        "host_threads": inv.host_threads, "host_jobs": sum(1 for s in sched.slots.values() if s.device is None),
        "ray": placement,
    }
    out.answer(doc, _plan_text)


def _host_memory(p, keys, on_host: bool) -> dict:
    from orchestrator.execute import devices as devmod
    from orchestrator.execute.local import host_memory_problem

    need, job = jobkinds.host_need(p, keys, {}, on_host)
    total, available = devmod.host_memory()
    problem = host_memory_problem(need, job, total, available, on_host)
    return {"job": job.label if job else None, "bytes": need, "on_host": on_host, "available": available,
            "total": total, "fits": problem is None, "problem": problem}


def _plan_text(d: dict) -> list[str]:
    sh, m, tc = d["shape"], d["model"], d["toolchain"]
    lines = [f"recipe {d['recipe']}: {sh['weights']} weights × {sh['pairs']} K/V pairs × {sh['contexts']} ctx = "
             f"{len(d['cells'])} cells",
             f"model {m['file']} (sha256 {m['sha256'][:12]}…, n_vocab {m['n_vocab']}); reference {d['reference']}; "
             f"corpus {d['corpus']}",
             f"toolchain {tc['name']} {tc['commit']} ({', '.join(tc['backends'])}) at {tc['bin_dir']}",
             *d["warnings"]]
    for kind in jobkinds.KINDS.values():
        of_kind = [x for x in d["jobs"] if x["kind"] == kind.name]
        if of_kind:
            done = sum(x["status"] == "done" for x in of_kind)
            failed = sum(x["status"] == "failed" for x in of_kind)
            lines.append(f"  {kind.title:<16} {len(of_kind):>4} jobs: {done} cached, {failed} failed (recorded), "
                         f"{len(of_kind) - done - failed} to run")
    for x in d["logits"]:
        lines.append(f"  {x['job']}: {'~' if x['chunks_estimated'] else ''}{x['chunks']} chunks, "
                     f"{memory.gib(x['bytes'], 1)} [{x['status']}]")
    for x in d["streamed"]:
        lines.append(f"  reference logits c={x['ctx']}: streamed into gangs of KLD runs, no file "
                     f"({x['why']}; {x['chunks']} chunks, {memory.gib(x['bytes'], 1)} as a file)")
    need, logits, free = d["disk_bytes_to_write"], d["logits_bytes_to_write"], d["free_bytes"]
    verdict = "fits" if fits_disk(need, free) else "DOES NOT FIT: lower evaluation.chunks"
    lines.append(f"disk: {memory.gib(need, 1)} to write (models ≈{memory.gib(need - logits, 1)}, reference logits "
                 f"{memory.gib(logits, 1)}), {memory.gib(free, 1)} free — {verdict}")
    hm = d["host_memory"]
    if hm["job"]:
        verdict = "fits" if hm["fits"] else "DOES NOT FIT: " + hm["problem"].split(": ", 1)[1]
        lines.append(f"host memory: the largest run, {hm['job']}, holds ≈{memory.gib(hm['bytes'], 1)}"
                     f"{' (the model on the CPU)' if hm['on_host'] else ''}; {memory.gib(hm['available'], 1)} "
                     f"available — {verdict}")
    if any(x.get("device") for x in d["jobs"]):
        basis = ", ".join(f"{k} {t['mean_s']:.1f}s (mean of {t['runs']})" for k, t in d["timings"].items())
        basis = f"from earlier runs: {basis}" if basis else ""
        guessed = d["timings_guessed_for"]
        guess = f"a guess for {', '.join(guessed)} (no earlier run)" if guessed else ""
        lines.append(f"schedule on {', '.join(x['id'] for x in d['devices'])} ({d['host_threads']} host threads): "
                     f"predicted wall {_fmt_s(d['predicted_wall_s'])}; " + "; ".join(x for x in (basis, guess) if x))
        lines += [f"  {x['id']}: {x['jobs']} jobs, busy {100 * x['busy']:.0f} % of the predicted wall"
                  for x in d["devices"]]
        if d["host_jobs"]:
            lines.append(f"  host CPU: {d['host_jobs']} quantize jobs on its cores")
    return lines + d["ray"]


RERUNNABLE = tuple(k.name for k in jobkinds.KINDS.values() if k.speed)  # speed: measured again on request


def run(recipe_path: Path, workspace, llama_cpp, retry_failed: bool, quiet: bool, out, rerun: str | None = None,
        devices: str | None = None, parallel: int = 1, ray: str | None = None, ray_shared: Path | None = None,
        ray_node_dir: str | None = None) -> int:
    from orchestrator.execute import devices as devmod
    from orchestrator.execute.coordinator import Coordinator

    kinds = tuple(k.strip() for k in rerun.split(",")) if rerun else ()
    for k in kinds:
        if k not in RERUNNABLE:
            raise UsageError(f"--rerun {k!r}: allowed {', '.join(RERUNNABLE)} (KLD and quantization are "
                             "deterministic: a measured one is not measured again)")
    if ray_shared is not None and ray is None:
        raise UsageError("--ray-shared DIR goes with --ray ADDRESS")
    r = recipemod.load(recipe_path)
    prepare.check_local_files(r, recipe_path)
    ws = Workspace(workspace)
    tc = toolchain.find(llama_cpp, r.toolchain)
    if ray is not None:
        from orchestrator.execute import ray_nodes

        ray_nodes.connect(ray, out)
    warning = toolchain.fa_warning(tc, r.cache.expanded())
    if warning:
        out.err(warning)
    new = not ws.root.exists()
    with ws.lock():
        try:
            inp = prepare.inputs(recipe_path, ws, tc, fetch=True)
        except RecipeError:  # refused on what the inputs are: a workspace made for this run goes again
            if new and not any(p.name != ".lock" for p in ws.root.iterdir()):
                shutil.rmtree(ws.root, ignore_errors=True)
            raise
        for line in advice.warnings(inp):
            out.warn(line)
        p = planner.build(inp)
        store = Store(ws.store_path)
        found = devmod.find(tuple(tc.backends), only=devices)
        executor = None
        if ray is not None:
            from orchestrator.execute.cluster import RayExecutor

            executor = RayExecutor(ray, ray_shared, ray_node_dir, found=found, parallel=parallel)
        from orchestrator.results import snapshot

        snapshot.warm()
        coordinator = Coordinator(p, ws, store, tc, executor, quiet=quiet, retry_failed=retry_failed, rerun=kinds,
                                  found=found, parallel=parallel)
        if ray is not None:
            from orchestrator.execute import ray_nodes

            with ray_nodes.own_lines_to(ws.logs / "ray.log"):  # Ray's own (a lost raylet's dump) kept there
                summary = coordinator.run()
        else:
            summary = coordinator.run()
        snapshot.table(store)  # the columnar copy of the new results: report, export… read it at once
    out(f"{inp.recipe.name}: {summary.cells} cells; {summary.jobs_run} jobs run, {summary.jobs_cached} cached; "
        f"{len(summary.failed)} failed; wall {summary.wall_s:.1f}s, tools {summary.tool_wall_s:.1f}s")
    for label, reason in summary.failed:
        out(f"  FAILED {label}: {reason}")
    if summary.failed:
        out("  (failures are recorded; `quantsweep run --retry-failed` runs them again)")
    out(f"tables: quantsweep report {inp.recipe.name} --workspace {ws.root}")
    return 1 if summary.failed else 0


def results(name: str, workspace, read_only: bool = False):
    """The stored rows of one recipe; UsageError naming what the store holds when there are none."""
    ws = Workspace(workspace)
    if not ws.exists():
        raise UsageError(f"no store in {ws.root}: run a recipe first")
    store = Store.read_only(ws.store_path) if read_only else Store(ws.store_path)
    df = store.results(name, provenance=False)
    if df.empty:
        known = store.recipes()
        raise UsageError(f"no results for {name!r} in {ws.root}; known: {', '.join(known) or 'none'}")
    return df


def report(name: str, workspace, out_dir, out) -> None:
    from orchestrator.report import render

    recipemod.check_name(name, "NAME")
    df = results(name, workspace)
    folder = Path(out_dir) if out_dir else Path("reports") / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    # the whole report is written beside the folder first, then each file renamed into it: a report that
    # fails half-way (a full disk) leaves the last complete one as it was, never a mix of old and new
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        try:
            made = render.write(df, tmp, name)
        except OSError as exc:
            _raise_if_full(exc, folder, f"the last complete report in {folder} is as it was")
            raise
        folder.mkdir(exist_ok=True)
        for path in sorted(tmp.iterdir()):
            os.replace(path, folder / path.name)
        for stale in render.owned_files(folder) - {p.name for p in made}:  # a table or plot no longer made
            (folder / stale).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for path in made:
        out(str(folder / path.name))


def export(workspace, fmt: str, output, name, out) -> None:
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise UsageError("--format parquet is binary: give -o FILE, or redirect stdout to a file or a pipe")
    ws = Workspace(workspace)
    if not ws.exists():
        raise UsageError(f"no store in {ws.root}: run a recipe first")
    store = Store(ws.store_path)
    if fmt not in ("jsonl", "csv", "parquet"):
        raise UsageError(f"--format {fmt!r}: allowed jsonl, csv, parquet")
    if name is not None and name not in (known := store.recipes()):
        raise UsageError(f"--name {name!r}: no such run in {ws.root}; known: {', '.join(known) or 'none'}")
    from orchestrator.results import snapshot

    import pyarrow as pa

    t = snapshot.table(store, name)  # the columnar copy: 10,000 cells are written in a fraction of a second
    if t is None:  # nothing stored, or a store this version only reads: through pandas
        t = pa.Table.from_pandas(store.results(name), preserve_index=False)
    from orchestrator.results.store import INT_COLUMNS

    for col in INT_COLUMNS:  # integers stay integers (a column with a missing value reads as float)
        i = t.schema.get_field_index(col)
        if i >= 0 and pa.types.is_floating(t.schema.field(i).type):
            t = t.set_column(i, col, t.column(i).cast(pa.int64()))
    if fmt == "jsonl":
        text = t.to_pandas().to_json(orient="records", lines=True, force_ascii=False)
        if output is None:
            _stdout(lambda: sys.stdout.write(text if text.endswith("\n") or not text else text + "\n"))
        else:
            from orchestrator.files import write_text_atomic

            try:
                write_text_atomic(Path(output), text)
            except OSError as exc:
                _raise_if_full(exc, Path(output).parent, f"nothing was written to {output}")
                raise
        return
    if output is None:
        _stdout(lambda: (_write_table(t, fmt, sys.stdout.buffer), sys.stdout.buffer.flush()))
        return
    from orchestrator.files import atomic_path

    try:
        with atomic_path(Path(output)) as tmp:
            _write_table(t, fmt, tmp)
    except OSError as exc:
        _raise_if_full(exc, Path(output).parent, f"nothing was written to {output}")
        raise


def _raise_if_full(exc: OSError, where: Path, kept: str) -> None:
    from orchestrator.errors import DiskSpaceError
    from orchestrator.files import disk_full, disk_of

    if disk_full(exc):
        raise DiskSpaceError(f"disk full: {disk_of(where)}; {kept}") from None


def _stdout(write) -> None:
    from orchestrator.errors import PipeClosed

    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:
        raise PipeClosed() from None


def _write_table(t, fmt: str, sink) -> None:
    """CSV (every string quoted, missing values empty, as Arrow writes it) or parquet."""
    if fmt == "csv":
        import pyarrow.csv as pcsv

        pcsv.write_csv(t, sink if hasattr(sink, "write") else str(sink))
    else:
        import pyarrow.parquet as pq

        pq.write_table(t, sink if hasattr(sink, "write") else str(sink))


def import_logs(files, workspace, name, weights, cache_k, cache_v, out, task: str | None = None) -> None:
    from orchestrator.results.importer import rows_from_file

    recipemod.check_name(name, "--name")
    ws = Workspace(workspace)
    for f in files:
        if not Path(f).is_file():
            raise UsageError(f"{f}: no such file")
    if task is not None:
        recipemod.check_name(task, "--task")
    rows = [r for f in files for r in rows_from_file(Path(f), name, weights, cache_k, cache_v, task)]
    with ws.lock():
        Store(ws.store_path).put_results(rows)
    out(f"imported {len(rows)} rows into {name!r} ({ws.store_path})")


def devices(llama_cpp, only: str | None, out) -> None:
    from orchestrator.execute import devices as devmod
    from orchestrator.report.answers import text_table

    tc = toolchain.find(llama_cpp)
    found = devmod.find(tuple(tc.backends), only=only)
    inv = devmod.inventory(found)

    def text(_) -> list[str]:
        header = ["index", "kind", "name", "id", "total GiB", "free GiB", "usable", "from"]
        return [*text_table(devmod.table(found, tc.backends), header),
                f"jobs run on: {', '.join(d.id for d in inv.devices)}; {inv.host_threads} host threads; toolchain "
                f"{tc.commit} ({', '.join(tc.backends)}), its devices: {', '.join(tc.devices) or 'CPU'}"]

    out.answer([{"index": f.index, "kind": f.device.kind, "name": f.device.name, "id": f.device.id,
                 "total_bytes": f.device.total, "free_bytes": f.device.free, "usable": f.usable,
                 "source": f.source} for f in found], text)


def toolchain_show(llama_cpp, out, flavor: str = "mainline") -> None:
    d = toolchain.find(llama_cpp, flavor).describe()
    keys = ("bin_dir", "flavor", "origin", "commit", "version", "compiler", "target", "backends", "devices",
            "cuda_fa_quants", "build_flags")
    out.answer(d, lambda d: [f"{k:<15} {', '.join(d[k]) if isinstance(d[k], (list, tuple)) else d[k]}"
                             for k in keys])


GPU_RESERVE = "0.75GiB"  # a CUDA context (≈ 0.6 GiB measured on an H100) and a little for a display


def recommend(name: str, workspace, vram: str, ctx: str | None, max_kld: float | None, reserve: str | None,
              out, min_accuracy: float | None = None, task: str | None = None) -> None:
    from orchestrator.report import analysis
    from orchestrator.plan import memory
    from orchestrator.report.answers import recommend_json, recommend_lines

    size = memory.parse_size(vram)
    if reserve is not None and size - memory.parse_size(reserve, "--reserve") <= 0:
        raise UsageError(f"--reserve {reserve} leaves nothing of --vram {vram}")
    if ctx is None or ctx == "max":
        n_ctx = None
    elif ctx.isdigit() and int(ctx) > 0:
        n_ctx = int(ctx)
    else:
        raise UsageError(f"--ctx {ctx!r}: a number of tokens, or max")
    if n_ctx is None and ctx is None and max_kld is None:
        raise UsageError("give --ctx N (or --ctx max), --max-kld X, or both")
    df = results(name, workspace)
    if reserve is None:  # the runtime's own memory: a GPU context, or nothing on a CPU build
        backends = {b for v in df.toolchain_backends.dropna() for b in str(v).split(",")} - {"CPU", "BLAS", ""}
        reserve = GPU_RESERVE if backends else "0"
        why = f"measured with {', '.join(sorted(backends))}" if backends else "measured on a CPU build"
    else:
        why = "--reserve"
    budget = analysis.Budget(vram=size, reserve=memory.parse_size(reserve, "--reserve"))
    if budget.usable <= 0:
        raise UsageError(f"--reserve {reserve} leaves nothing of --vram {vram}")
    cells = analysis.cells(df)
    if cells.empty:
        raise UsageError(f"{name}: no measured KLD cell in the store")
    arch = analysis.architecture(df)
    cells, task_note = _by_task(name, df, cells, min_accuracy, task)
    rec = analysis.recommend(cells, arch, budget, n_ctx, max_kld)
    if task_note:
        rec.notes.insert(0, task_note)
    out.answer(recommend_json(name, rec, budget, n_ctx, max_kld, reserve_why=why),
               lambda _: recommend_lines(name, rec, budget, n_ctx, max_kld, reserve_why=why))


def _by_task(name: str, df, cells, min_accuracy: float | None, task: str | None):
    """The cells with their accuracy on `task` (the store's only task when none is named); with
    `min_accuracy` (a fraction, or percent above 1), only those that reach it; and a note saying so."""
    from orchestrator.report import analysis

    if min_accuracy is None and task is None:
        return cells, ""
    tr = analysis.task_results(df)
    names = list(dict.fromkeys(tr.task)) if not tr.empty else []
    if not names:
        raise UsageError(f"{name}: no task results in the store (add tasks: to the recipe and run it)")
    if task is None and len(names) > 1:
        raise UsageError(f"--task: which one? {name} has {', '.join(names)}")
    task = task or names[0]
    if task not in names:
        raise UsageError(f"--task {task}: {name} has {', '.join(names)}")
    t = tr[(tr.task == task) & (tr.weights != "reference")]
    acc = t.set_index(["weights", "type_k", "type_v"])[["accuracy", "changed"]].rename(
        columns={"accuracy": "task_accuracy", "changed": "task_changed"})
    cells = cells.merge(acc, left_on=["weights", "type_k", "type_v"], right_index=True, how="left")
    ref = tr[(tr.task == task) & (tr.weights == "reference")].accuracy
    ref_acc = f"the reference: {100 * ref.iloc[0]:.1f} %" if not ref.empty else ""
    ref_text = f" ({ref_acc})" if ref_acc else ""
    if min_accuracy is None:
        return cells, f"{task} accuracy beside each cell{ref_text}"
    bound = min_accuracy / 100 if min_accuracy > 1 else min_accuracy
    kept = cells[cells.task_accuracy >= bound - 1e-12]
    if kept.empty:
        best = cells.task_accuracy.max()
        raise UsageError(f"--min-accuracy {min_accuracy:g}: no measured cell reaches {100 * bound:.1f} % on {task} "
                         f"(the best: {100 * best:.1f} %{', ' + ref_acc if ref_acc else ''})")
    left = len(cells) - len(kept)
    return kept, (f"only cells with {task} accuracy ≥ {100 * bound:.1f} %{ref_text}: {left} of {len(cells)} left out")


def _run_ref(ref: str, workspace):
    """NAME, or NAME@WORKSPACE for a run kept in another store."""
    name, sep, where = ref.rpartition("@")
    if sep and name and Path(where).is_dir():
        return name, Path(where)
    return ref, workspace


def compare(a: str, b: str, workspace, out) -> None:
    from orchestrator.report import analysis
    from orchestrator.report.answers import compare_json, compare_lines

    (an, aw), (bn, bw) = _run_ref(a, workspace), _run_ref(b, workspace)
    da, db = results(an, aw, read_only=True), results(bn, bw, read_only=True)  # compare writes nothing
    c, differ = analysis.compare(da, db), analysis.run_differences(da, db)
    tasks = analysis.compare_tasks(da, db)
    out.answer(compare_json(a, b, c, differ, tasks), lambda _: compare_lines(a, b, c, differ, tasks))


def memory_table(model: Path, ctxs: str, pairs: str, check: bool, gpu_layers: int, llama_cpp, out) -> int:
    """The memory of a GGUF at given contexts and K/V pairs; with `check`, llama.cpp's own numbers beside."""
    from orchestrator.inputs import gguf_info
    from orchestrator.plan import memory
    from orchestrator import procs
    from orchestrator.files import sha256_file
    from orchestrator.tools.llama_types import CACHE_TYPES
    from orchestrator.report.answers import text_table
    from orchestrator.tools import perplexity

    gguf_info.check_file(Path(model))
    try:
        contexts = [int(c) for c in ctxs.split(",")]
        kv_pairs = [tuple(p.split("/")) for p in pairs.split(",")]
    except ValueError:
        raise UsageError(f"--ctx {ctxs!r}: numbers separated by commas, e.g. 4096,32768") from None
    for p in kv_pairs:
        if len(p) != 2 or any(t not in memory.CACHE_BLOCKS or t not in CACHE_TYPES for t in p):
            raise UsageError(f"--pairs: {'/'.join(p)!r} is not K/V, each one of {', '.join(memory.CACHE_BLOCKS)}")
    if any(c < 16 for c in contexts):
        raise UsageError("--ctx: each context must be at least 16")
    root = toolchain.cache_root()
    info = gguf_info.read(Path(model), root / "gguf-info", sha256_file(Path(model), root / "file-hashes.json"))
    arch = memory.Architecture.from_hparams(info.architecture, info.hparams, info.n_vocab)
    tc = toolchain.find(llama_cpp) if check else None
    header = ["ctx", "K/V", "tensors MiB", "K MiB", "V MiB", "compute MiB", "total MiB"]
    header += ["llama.cpp K", "llama.cpp V", "llama.cpp MiB", "ours / llama.cpp"] if check else []
    rows, worst = [], 0.0
    for c in contexts:
        for tk, tv in kv_pairs:
            fp = memory.footprint(arch, info.tensor_bytes, tk, tv, c)
            row = [str(c), f"{tk}/{tv}"] + [f"{b / 2**20:.1f}" for b in (fp.weights, fp.k, fp.v, fp.compute, fp.total)]
            if tc is not None:
                res = procs.run(perplexity.kv_probe_argv(tc.exe("llama-perplexity"), Path(model), ctx=c, type_k=tk,
                                                         type_v=tv, gpu_layers=gpu_layers), timeout=600)
                rep = perplexity.parse_kv_report(res.stdout + res.stderr)
                total = perplexity.breakdown_total(perplexity.parse_memory_breakdown(res.stdout))
                if rep is None or not total:
                    raise UsageError(f"llama-perplexity did not report its memory (rc {res.rc}):\n{res.tail(8)}")
                row += [f"{rep['k_mib']:.2f}", f"{rep['v_mib']:.2f}", f"{total:.0f}", f"{fp.total / 2**20 / total:.3f}"]
                worst = max(worst, abs(fp.k / 2**20 - rep["k_mib"]) / max(rep["k_mib"], 0.01),
                            abs(fp.v / 2**20 - rep["v_mib"]) / max(rep["v_mib"], 0.01))
            rows.append(row)
    out(f"{Path(model).name}: {info.architecture}, {arch.n_layer} layers, "
        f"{sum(1 for s in arch.swa if s)} sliding-window (n_swa {arch.n_swa}), trained ctx {arch.n_ctx_train}, "
        f"K/V per token (full layers, f16): {arch.kv_bytes_per_token('f16', 'f16') / 1024:.1f} KiB")
    for line in text_table(rows, header):
        out(line)
    if tc is not None:
        out(f"largest K or V difference from llama.cpp ({', '.join(tc.backends)}): {worst * 100:.2f} %")
        out("llama.cpp MiB: its own account of the devices' memory (model + context + compute; the host's "
            "when no device is used); the runtime itself (a CUDA context) comes on top")
    return 0
