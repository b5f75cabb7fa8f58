"""Execute a plan: each job in its own subprocess, judged from its output, recorded by key.

A failing job becomes a recorded failure and the sweep goes on; jobs downstream of it are
reported failed for this run without being recorded, so they run once the cause is fixed.
Artifacts appear under their final names only when complete, so Ctrl-C or kill -9 loses at
most the job in flight.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .errors import DiskSpaceError, ToolFailed
from .files import atomic_path, remove_partials
from .plan import Job, Plan
from .store import Store
from .toolchain import Toolchain
from .tools import bench as tb, imatrix as ti, perplexity as tp, quantize as tq
from .workspace import Workspace

ARTIFACT_KINDS = ("reference", "quantize", "imatrix", "base")


@dataclass
class Summary:
    cells: int = 0
    jobs_total: int = 0
    jobs_run: int = 0
    jobs_cached: int = 0
    failed: list = field(default_factory=list)  # (job label, reason)
    wall_s: float = 0.0
    tool_wall_s: float = 0.0


class Progress:
    def __init__(self, total: int, stream=None, quiet: bool = False):
        self.total, self.done, self.stream, self.quiet = total, 0, stream, quiet
        self.per_kind: dict[str, list[float]] = {}

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=self.stream or sys.stderr, flush=True)

    def start(self, job: Job) -> None:
        self.say(f"[{self.done + 1}/{self.total}] {job.label} …")

    def end(self, job: Job, wall: float, ok: bool, remaining: list[Job], note: str = "") -> None:
        self.done += 1
        self.per_kind.setdefault(job.kind, []).append(wall)
        eta = sum(self._guess(j.kind) for j in remaining)
        self.say(f"    {'done' if ok else 'FAILED'} in {wall:.1f}s{note}  ({self.done}/{self.total}, "
                 f"ETA {_fmt(eta)})")

    def _guess(self, kind: str) -> float:
        seen = self.per_kind.get(kind) or [w for ws in self.per_kind.values() for w in ws] or [0.0]
        return sum(seen) / len(seen)


def _fmt(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s"


class Runner:
    def __init__(self, plan: Plan, ws: Workspace, store: Store, tc: Toolchain, *, quiet: bool = False,
                 retry_failed: bool = False, rerun: tuple[str, ...] = ()):
        self.plan, self.ws, self.store, self.tc = plan, ws, store, tc
        self.inp = plan.inputs
        self.quiet, self.retry_failed, self.rerun = quiet, retry_failed, set(rerun)
        self.jobs = {j.key: j for j in plan.jobs}
        self.failed: dict[str, str] = {}  # key -> reason, this run

    # -- deciding what runs ----------------------------------------------------------------

    def to_run(self) -> list[Job]:
        status = self.store.job_statuses(self.jobs)
        need = {k for k, s in ((k, status.get(k)) for k in self.jobs)
                if s is None or (s == "failed" and self.retry_failed) or self.jobs[k].kind in self.rerun}
        # a done job whose artifact was deleted must run again if something that runs needs it
        changed = True
        while changed:
            changed = False
            for key in list(need):
                for dep in self.jobs[key].deps:
                    if (dep not in need and status.get(dep) == "done" and self.jobs[dep].kind in ARTIFACT_KINDS
                            and not self._artifact_ok(dep)):
                        need.add(dep)
                        changed = True
        return [j for j in self.plan.jobs if j.key in need]

    def _artifact_ok(self, key: str) -> bool:
        job = self.store.job(key)
        return bool(job and job["status"] == "done" and job["artifact"] and Path(job["artifact"]).exists())

    def model_path(self, key: str) -> Path:
        if key.startswith("source-"):
            return self.inp.source_path
        return Path(self.store.job(key)["artifact"])

    # -- running ---------------------------------------------------------------------------

    def run(self) -> Summary:
        t0 = time.monotonic()
        remove_partials(self.ws.artifacts)
        todo = self.to_run()
        summary = Summary(cells=len(self.plan.cells), jobs_total=len(self.plan.jobs))
        summary.jobs_cached = len(self.plan.jobs) - len(todo)
        self.store.forget_failed([j.key for j in todo])  # failed jobs in todo are retried (--retry-failed, --rerun)
        for key, st in self.store.job_statuses(self.jobs).items():
            if st == "failed":  # recorded earlier and not retried: its dependents cannot run either
                self.failed[key] = self.store.job(key)["reason"]
        self._check_disk(todo)
        progress = Progress(len(todo), quiet=self.quiet)
        if not todo:
            progress.say(f"all {len(self.plan.jobs)} jobs cached; nothing to run")
        run_id = self.store.start_run(self.inp.recipe.name, self.inp.recipe.canonical_hash(),
                                      self.inp.recipe.model_dump_json(), self.tc.describe(), self.inp.host)
        status = "interrupted"
        try:
            for i, job in enumerate(todo):
                upstream = next((self.failed[d] for d in job.deps if d in self.failed), None)
                if upstream is not None:
                    self.failed[job.key] = f"upstream failed: {upstream}"
                    progress.say(f"[skip] {job.label}: {self.failed[job.key]}")
                    progress.done += 1
                    continue
                progress.start(job)
                wall, ok = self._run_job(job)
                summary.jobs_run += 1
                summary.tool_wall_s += wall
                progress.end(job, wall, ok, todo[i + 1:], "" if ok else f": {self.failed[job.key]}")
            status = "failed" if self.failed else "done"
        finally:
            summary.wall_s = time.monotonic() - t0
            summary.failed = [(self.jobs[k].label, r) for k, r in self.failed.items()]
            self._write_results(run_id)
            self.store.finish_run(run_id, status, summary.jobs_run, len(self.failed), summary.wall_s,
                                  summary.tool_wall_s)
        return summary

    def _check_disk(self, todo: list[Job]) -> None:
        need = sum(j.params["logits_bytes"] for j in todo if j.kind == "base")
        if not need:
            return
        self.ws.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.ws.root).free
        if need * 1.05 > free:
            raise DiskSpaceError(f"the reference logits need {need / 2**30:.2f} GiB but {self.ws.root} has "
                                 f"{free / 2**30:.2f} GiB free: lower evaluation.chunks or free space")

    def _run_job(self, job: Job) -> tuple[float, bool]:
        log_dir = self.ws.log_dir(job.key)
        if log_dir.exists():
            shutil.rmtree(log_dir)
        runner = getattr(self, f"_job_{job.kind}")
        t = time.monotonic()
        try:
            try:
                result, artifact, res = runner(job, log_dir)
            except OSError as exc:  # a tool that cannot start, a full disk: this job fails, the sweep goes on
                raise ToolFailed(f"{type(exc).__name__}: {exc}") from exc
        except ToolFailed as exc:
            self.failed[job.key] = exc.reason
            self.store.record_job(job.key, job.kind, "failed", log_dir=str(log_dir), reason=exc.reason,
                                  stderr_tail=exc.stderr_tail, wall_s=time.monotonic() - t,
                                  argv=getattr(exc, "argv", ""))
            return getattr(exc, "wall_s", time.monotonic() - t), False
        self.store.record_job(job.key, job.kind, "done", result=result, artifact=str(artifact or ""),
                              log_dir=str(log_dir), wall_s=res.wall_s, argv=" ".join(res.argv))
        return res.wall_s, True

    def _tool(self, job: Job, argv: list[str], log_dir: Path, timeout_min: float) -> procs.ProcResult:
        res = procs.run(argv, log_dir=log_dir, name=job.kind, timeout=timeout_min * 60)
        if res.timed_out:
            exc = ToolFailed(f"timed out after {timeout_min:g} min", stderr_tail=res.tail())
            exc.wall_s, exc.argv = res.wall_s, " ".join(argv)
            raise exc
        return res

    def _judged(self, res: procs.ProcResult, judge, *args):
        try:
            return judge(res.rc, res.stdout, res.stderr, *args)
        except ToolFailed as exc:
            exc.wall_s, exc.argv = res.wall_s, " ".join(res.argv)
            raise

    # -- one method per job kind -----------------------------------------------------------

    def _quantize_to(self, job: Job, log_dir: Path, qtype: str, imatrix: Path | None):
        out = self.ws.model_path(job.params["label"], job.key)
        q = self.inp.recipe.quantize
        with atomic_path(out) as tmp:
            argv = tq.argv(self.tc.exe("llama-quantize"), self.model_path(job.params["input"]), tmp, qtype,
                           imatrix=imatrix, tensor_types=job.params.get("tensor_types"),
                           allow_requantize=job.params["allow_requantize"], threads=q.threads,
                           extra=job.params.get("extra"))
            res = self._tool(job, argv, log_dir, q.timeout_minutes)
            result = self._judged(res, tq.judge, tmp)
        result["file_bytes"] = out.stat().st_size
        return result, out, res

    def _job_reference(self, job: Job, log_dir: Path):
        return self._quantize_to(job, log_dir, job.params["type"], None)

    def _job_quantize(self, job: Job, log_dir: Path):
        im = job.params.get("imatrix")
        imatrix = None
        if im:
            imatrix = Path(job.params["imatrix_file"]) if im.startswith("imatrixfile-") else \
                Path(self.store.job(im)["artifact"])
        result, out, res = self._quantize_to(job, log_dir, job.params["type"], imatrix)
        if job.params.get("tensor_types") and not result.get("overrides_applied"):
            # llama-quantize ignores a pattern that matches nothing (or an F16/BF16 target) silently
            out.unlink(missing_ok=True)
            exc = ToolFailed(f"tensor_types {list(job.params['tensor_types'])} matched no tensor: check the "
                             "patterns (regex searched in lower-cased names such as blk.0.ffn_down.weight)",
                             stderr_tail=res.tail())
            exc.wall_s, exc.argv = res.wall_s, " ".join(res.argv)
            raise exc
        return result, out, res

    def _job_imatrix(self, job: Job, log_dir: Path):
        out = self.ws.imatrix_path(job.key)
        ev = self.inp.recipe.evaluation
        with atomic_path(out) as tmp:
            argv = ti.argv(self.tc.exe("llama-imatrix"), self.model_path(job.params["model"]),
                           Path(job.params["corpus"]), tmp, ctx=job.params["ctx"], chunks=job.params["chunks"],
                           gpu_layers=ev.gpu_layers, threads=ev.threads)
            res = self._tool(job, argv, log_dir, ev.timeout_minutes)
            result = self._judged(res, ti.judge, tmp)
        return result, out, res

    def _job_base(self, job: Job, log_dir: Path):
        ev, p = self.inp.recipe.evaluation, job.params
        out = self.ws.logits_path(job.key)
        with atomic_path(out) as tmp:
            argv = tp.base_argv(self.tc.exe("llama-perplexity"), self.model_path(p["model"]),
                                self.inp.corpus.path, tmp, ctx=p["ctx"], chunks=p["chunks"], batch=ev.batch,
                                ubatch=ev.ubatch, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                                threads=ev.threads, extra=ev.extra_args)
            res = self._tool(job, argv, log_dir, ev.timeout_minutes)
            result = self._judged(res, tp.judge_base, tmp, p["n_vocab"], p["ctx"])
        return result, out, res

    def _job_kld(self, job: Job, log_dir: Path):
        ev, p = self.inp.recipe.evaluation, job.params
        base = self.store.job(p["base"])
        argv = tp.kld_argv(self.tc.exe("llama-perplexity"), self.model_path(p["model"]), Path(base["artifact"]),
                           ctx=p["ctx"], batch=ev.batch, ubatch=ev.ubatch, cache_k=p["cache_k"],
                           cache_v=p["cache_v"], flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                           threads=ev.threads, extra=ev.extra_args)
        res = self._tool(job, argv, log_dir, ev.timeout_minutes)
        return self._judged(res, tp.judge_kld, base["result"]["ppl_base"]), None, res

    def _job_bench(self, job: Job, log_dir: Path):
        b, p = self.inp.recipe.bench, job.params
        argv = tb.argv(self.tc.exe("llama-bench"), self.model_path(p["model"]), cache_k=p["cache_k"],
                       cache_v=p["cache_v"], prompt=b.prompt, gen=b.gen, depth=b.depth,
                       repetitions=b.repetitions, flash_attn=b.flash_attn, gpu_layers=b.gpu_layers,
                       threads=b.threads, batch=b.batch, ubatch=b.ubatch, extra=b.extra_args)
        res = self._tool(job, argv, log_dir, b.timeout_minutes)
        rows = self._judged(res, tb.judge, tb.expected_tests(b.prompt, b.gen, b.depth))
        return {"tests": rows}, None, res

    # -- results rows ----------------------------------------------------------------------

    def _write_results(self, run_id: int) -> None:
        from .results import rows_for_plan

        rows = rows_for_plan(self, run_id)
        self.store.put_results(rows, self.inp.recipe.name, {c.id for c in self.plan.cells})
