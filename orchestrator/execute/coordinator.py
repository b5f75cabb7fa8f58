"""Execute a plan: the coordinator. It decides what runs (store + plan), asks the scheduler what
starts where, hands each job's spec to a worker (one thread per job in flight, each running its tool
in its own process group), and records every outcome the moment it arrives. Only this module writes
the store.

A failing job becomes a recorded failure and the sweep goes on; jobs downstream of it are reported
failed for this run without being recorded, so they run once the cause is fixed. Artifacts appear
under their final names only when complete, so Ctrl-C or kill -9 loses at most the jobs in flight.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.execute import devices, scheduler, worker
from orchestrator.plan import jobspec
from orchestrator import procs
from orchestrator.execute.progress import Progress, make as make_progress
from orchestrator.errors import DiskSpaceError
from orchestrator.files import disk_of, fits_disk, remove_partials
from orchestrator.plan.memory import gib as human
from orchestrator.plan.graph import Job, Plan, source_key
from orchestrator.results.store import Store
from orchestrator.tools.toolchain import Toolchain
from orchestrator.workspace import Workspace

ARTIFACT_KINDS = ("reference", "quantize", "imatrix", "base")


@dataclass
class Summary:
    cells: int = 0
    jobs_run: int = 0
    jobs_cached: int = 0
    failed: list = field(default_factory=list)  # (job label, reason)
    wall_s: float = 0.0
    tool_wall_s: float = 0.0


def thread_policy(inv: scheduler.Inventory, parallel: int = 1) -> jobspec.Threads:
    """A CPU box splits its cores between `parallel` jobs (one job takes them all: the tools' default).
    On a GPU box a device job holds no host thread, and two quantize jobs share the cores, so the
    models the devices wait for are made twice as fast as one at a time would."""
    host = inv.host_threads
    if any(d.is_host for d in inv.devices):
        share = max(1, host // parallel)
        return jobspec.Threads(cpu=share if parallel > 1 else None, cpu_hold=share,
                               device=share if parallel > 1 else None, device_hold=share)
    half = max(1, host // 2)
    return jobspec.Threads(cpu=half if host > 1 else None, cpu_hold=half, device=None, device_hold=0)


RESULTS_EVERY_S = 10  # how often a running sweep publishes its finished cells to `results`
STATUS_FILE = "status.json"  # what `quantsweep status` shows of a run on this machine

class Runner:
    def __init__(self, plan: Plan, ws: Workspace, store: Store, tc: Toolchain, *, quiet: bool = False,
                 retry_failed: bool = False, rerun: tuple[str, ...] = (), found=None, parallel: int = 1):
        self.plan, self.ws, self.store, self.tc = plan, ws, store, tc
        self.inp = plan.inputs
        self.quiet, self.retry_failed, self.rerun = quiet, retry_failed, set(rerun)
        self.jobs = {j.key: j for j in plan.jobs}
        self.failed: dict[str, str] = {}  # key -> reason, this run
        self._specs: dict[str, jobspec.JobSpec] = {}
        self._results: dict[str, dict] = {}
        self.remade: dict[str, str] = {}         # artifacts made again before the sweep: key -> why
        self._status: dict = {}                  # what the status file is written from (run() fills it)
        self._remade_now: set[str] = set()       # artifacts made again during it (once each)
        found = found if found is not None else devices.find(tuple(tc.backends) if tc else ("CPU",))
        self._found = {f.device.id: f for f in found}
        self.inventory = devices.inventory(found)
        self.threads = thread_policy(self.inventory, parallel)

    # -- deciding what runs ----------------------------------------------------------------

    def open_jobs(self) -> tuple[set[str], dict[str, str]]:
        """The keys with no result to keep: never run, failed and retried (every failure with
        --retry-failed; one the machine caused, a full disk or a signal, by a plain run), or of a kind
        --rerun names; and every job's recorded status."""
        status = self.store.job_statuses(self.jobs)
        machine = self.store.machine_failures(self.jobs)
        need = {k for k, s in ((k, status.get(k)) for k in self.jobs)
                if s is None or (s == "failed" and (self.retry_failed or k in machine))
                or self.jobs[k].kind in self.rerun}
        return need, status

    def to_run(self) -> list[Job]:
        need, status = self.open_jobs()
        # a done job whose artifact is missing or is not the file it made runs again if something that runs
        # needs it: a KLD is never measured on a damaged model or logits file
        self.remade: dict[str, str] = {}
        changed = True
        while changed:
            changed = False
            for key in list(need):
                for dep in self.jobs[key].deps:
                    if dep in need or dep in self.remade or status.get(dep) != "done" \
                            or self.jobs[dep].kind not in ARTIFACT_KINDS:
                        continue
                    problem = self._artifact_problem(dep)
                    if problem:
                        self.remade[dep] = problem
                        need.add(dep)
                        changed = True
        return [j for j in self.plan.jobs if j.key in need]

    def artifact_path(self, key: str) -> Path:
        """Where the artifact of job `key` is in this workspace (from the plan, not from the store: the
        workspace may have been moved or copied since it was recorded)."""
        return self._env().artifact(jobspec.output_ref(self.jobs[key]))

    def _artifact_problem(self, key: str) -> str | None:
        """Why the artifact of the done job `key` cannot be used as it is, or None."""
        from orchestrator.files import sha256_file
        from orchestrator.tools.perplexity import logits_problem

        path, job = self.artifact_path(key), self.jobs[key]
        if not path.is_file():
            return f"{self.ws.relative(path)} is missing"
        made = self.store.job(key)["result"]
        if job.kind == "base":
            problem = logits_problem(path, job.params["n_vocab"], job.params["ctx"])
            if problem and not problem.startswith("truncated"):
                return None  # not a file of ours at all: _check_logits refuses it, naming it, untouched
        size, recorded = path.stat().st_size, made.get("file_bytes", made.get("logits_bytes"))
        if recorded is not None and size != recorded:
            return f"{self.ws.relative(path)} has {size} bytes, {recorded} when it was made"
        if made.get("sha256") and sha256_file(path, worker.hash_memo()) != made["sha256"]:
            return f"{self.ws.relative(path)} is not the file that was made (its sha256 differs)"
        return None

    def _check_logits(self, todo: list[Job]) -> None:
        """Reference logits kept from an earlier run are checked before a KLD run reads them; a damaged or
        foreign file stops the run here, named, and is left as it is."""
        from orchestrator.errors import InputFileError
        from orchestrator.tools.perplexity import logits_problem

        for key in {d for j in todo if j.kind == "kld" for d in j.deps if self.jobs[d].kind == "base"}:
            rec = self.store.job(key)
            if rec is None or rec["status"] != "done" or key in {j.key for j in todo}:
                continue
            path, params = self.artifact_path(key), self.jobs[key].params
            if path.exists():
                problem = logits_problem(path, params["n_vocab"], params["ctx"])
                if problem:
                    raise InputFileError(f"{path}: {problem}; not used. Delete it and run again to compute "
                                         "it anew")

    # -- running ---------------------------------------------------------------------------

    def run(self) -> Summary:
        t0 = time.monotonic()
        remove_partials(self.ws.artifacts)
        todo = self.to_run()
        summary = Summary(cells=len(self.plan.cells))
        summary.jobs_cached = len(self.plan.jobs) - len(todo)
        self._check_disk(todo)
        self._check_logits(todo)
        self.store.forget_failed([j.key for j in todo])  # failed jobs in todo are retried (--retry-failed, --rerun)
        for key, st in self.store.job_statuses(self.jobs).items():
            if st == "failed":  # recorded earlier and not retried: its dependents cannot run either
                self.failed[key] = self.store.job(key)["reason"]
        progress = make_progress(len(todo), quiet=self.quiet,
                                 prior={k: w for k, (w, _) in self.store.kind_timings().items()})
        for key, problem in self.remade.items():  # said even with --quiet: a file of ours was damaged
            print(f"quantsweep: warning: {self.jobs[key].label}: {problem}; made again", file=sys.stderr,
                  flush=True)
        if not todo:
            progress.say(f"all {len(self.plan.jobs)} jobs cached; nothing to run")
        run_id = self.store.start_run(self.inp.recipe.name, self.inp.recipe.canonical_hash(),
                                      self.inp.recipe.model_dump_json(), self.tc.describe(), self.inp.host)
        status = "interrupted"
        self._status = {"cached": summary.jobs_cached, "failed_before": len(self.failed), "progress": progress}
        self._publish_status("running")
        try:
            with progress:
                self._loop(todo, summary, progress, run_id)
            status = "failed" if self.failed else "done"
        finally:
            self._publish_status(status)
            summary.wall_s = time.monotonic() - t0
            summary.failed = [(self.jobs[k].label, r) for k, r in self.failed.items()]
            self._write_results(run_id)
            self.store.finish_run(run_id, status, summary.jobs_run, len(self.failed), summary.wall_s,
                                  summary.tool_wall_s)
        return summary

    def _loop(self, todo: list[Job], summary: Summary, progress: Progress, run_id: int) -> None:
        pending = {j.key: j for j in todo}
        written = time.monotonic()
        order = {j.key: i for i, j in enumerate(self.plan.jobs)}  # a job made again joins in plan order
        running: dict[Future, scheduler.Placement] = {}
        env = self._env()
        pool = ThreadPoolExecutor(max_workers=max(2, len(todo)), thread_name_prefix="quantsweep-job")
        try:
            while pending or running:
                for key in sorted(pending, key=order.get):
                    up = next((self.failed[d] for d in pending[key].deps if d in self.failed), None)
                    if up is not None:
                        self.failed[key] = f"upstream failed: {up}"
                        progress.skip(pending[key], self.failed[key])
                        del pending[key]
                if running or len(pending) > 1:  # free memory read again: foreign processes are respected
                    self.inventory = devices.inventory(devices.refresh(list(self._found.values())),
                                                       self.inventory.host_threads)
                busy = {p.key for p in running.values()}
                ready = [j for j in sorted(pending.values(), key=lambda j: order[j.key])
                         if not any(d in pending or d in busy for d in j.deps)]
                for place in scheduler.decide([self._spec(j) for j in ready], list(running.values()),
                                              self.inventory):
                    job = pending.pop(place.key)
                    progress.start(job, place.device)
                    dev = self._found.get(place.device)
                    running[pool.submit(worker.run, place.spec, env, device_env=dev.pin_env() if dev else None,
                                        device=place.device or "cpu")] = place
                if not running:
                    if not pending:
                        break  # the last jobs were skipped: their upstream failed
                    raise RuntimeError(f"no job can start: {sorted(pending)}")  # a scheduler bug, never a state
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    place = running.pop(fut)
                    self._record(self.jobs[place.key], place, fut.result(), pending, summary, progress,
                                 [*pending.values(), *(self.jobs[p.key] for p in running.values())])
                self._publish_status("running")
                if (pending or running) and time.monotonic() - written > RESULTS_EVERY_S:
                    self._write_results(run_id)  # a report during the run shows the cells done so far
                    written = time.monotonic()
        except BaseException:  # Ctrl-C: every tool in flight dies with its process group; none is recorded
            procs.kill_all()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)

    def _publish_status(self, state: str) -> None:
        """Write what `quantsweep status` shows of this run, from another shell: its state, the jobs done
        of the plan, failures, the ETA and what runs on which device (a few hundred bytes a job end)."""
        from orchestrator.files import write_text_atomic

        progress = self._status["progress"]
        now = progress.snapshot()
        if state != "running" or not now["finished"]:
            now["eta_s"] = None  # none before a job has ended, and none once the run has
        state_doc = {"backend": "local", "recipe": self.inp.recipe.name, "pid": os.getpid(), "state": state,
                     "jobs": len(self.plan.jobs), "cached": self._status["cached"], "to_run": progress.total,
                     "failed_before": self._status["failed_before"],
                     **now, "updated": time.time()}
        try:
            write_text_atomic(self.ws.root / STATUS_FILE, json.dumps(state_doc, indent=1))
        except OSError:  # a status is a courtesy: a full disk must not end the sweep here
            pass

    def _record(self, job: Job, place: scheduler.Placement, out: jobspec.Outcome, pending: dict | None,
                summary: Summary, progress: Progress, remaining: list[Job]) -> None:
        """Record what a job's worker returned. `pending` (None where the back-end re-queues on its own):
        the jobs not started yet, where a job to be run again is put back."""
        summary.jobs_run += 1
        summary.tool_wall_s += out.result.get("tool_s", out.wall_s) if out.ok else out.wall_s
        if (not out.ok and out.out_of_memory and not place.spec.resources.exclusive and place.device != "cpu"
                and pending is not None):
            # another job on the device may have taken the memory: once more, with the device alone
            res = place.spec.resources.model_copy(update={"exclusive": True})
            self._specs[job.key] = place.spec.model_copy(update={"resources": res})
            pending[job.key] = job
            progress.requeue(job, f"    out of memory on {place.device}: {job.label} re-queued with the device "
                                  "to itself")
            return
        bad = out.bad_input
        if not out.ok and bad in self.jobs and bad not in self._remade_now and pending is not None:
            # an artifact it reads was damaged (and removed) since the run began: made again, then this job
            self._remade_now.add(bad)
            for key in (bad, job.key, *(k for k in pending if bad in self.jobs[k].deps)):
                self._specs.pop(key, None)  # built with the damaged file's record: built again
            pending[bad], pending[job.key] = self.jobs[bad], job
            progress.total += 1
            progress.requeue(job, f"    {job.label}: {out.reason}; {self.jobs[bad].label} runs again first")
            return
        if out.ok:
            self.store.record_job(job.key, job.kind, "done", result=out.result, artifact=self.ws.relative(
                out.artifact) if out.artifact else "", log_dir=self.ws.relative(out.log_dir), wall_s=out.wall_s,
                argv=out.argv)
            self._results[job.key] = out.result
        else:
            self.failed[job.key] = out.reason
            self.store.record_job(job.key, job.kind, "failed", log_dir=self.ws.relative(out.log_dir),
                                  reason=out.reason, stderr_tail=out.stderr_tail, wall_s=out.wall_s, argv=out.argv,
                                  result={"machine": True} if out.machine else None)
        progress.end(job, out.wall_s, out.ok, remaining, "" if out.ok else f": {out.reason}")

    def _spec(self, job: Job) -> jobspec.JobSpec:
        if job.key not in self._specs:
            upstream = {d: self._result(d) for d in job.params.values() if isinstance(d, str) and d in self.jobs}
            self._specs[job.key] = jobspec.build(job, self.plan, upstream, self.threads)
        return self._specs[job.key]

    def _result(self, key: str) -> dict:
        if key not in self._results:
            rec = self.store.job(key)
            self._results[key] = rec["result"] if rec else {}
        return self._results[key]

    def _env(self) -> worker.WorkerEnv:
        return worker.WorkerEnv(tool=self.tc.exe, ws=self.ws, inputs=self._inputs())

    def _inputs(self) -> dict[str, Path]:
        """The files a spec refers to by key: the source model, corpora, given imatrix files."""
        inp = self.inp
        out = {source_key(inp.source_sha): inp.source_path, inp.corpus.sha256: inp.corpus.path}
        for im in inp.imatrix_inputs.values():
            if isinstance(im, tuple):
                out[f"imatrixfile-{im[1][:24]}"] = im[0]
            else:
                out[im.sha256] = im.path
        return out

    def _check_disk(self, todo: list[Job]) -> None:
        """The models, importance matrices and reference logits this run writes must fit the workspace's
        disk (models estimated from their type, logits exact), with 5 % to spare."""
        need = self.plan.disk_bytes(j.key for j in todo)
        if not need:
            return
        self.ws.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.ws.root).free
        if not fits_disk(need, free):
            logits = sum(j.params["logits_bytes"] for j in todo if j.kind == "base")
            raise DiskSpaceError(f"this run writes about {human(need)} (models {human(need - logits)}, reference "
                                 f"logits {human(logits)}) but {self.ws.root} has {human(free)} free, on "
                                 f"{disk_of(self.ws.root)}: free space, or lower evaluation.chunks")

    # -- results rows ----------------------------------------------------------------------

    def _write_results(self, run_id: int) -> None:
        from orchestrator.results.rows import rows_for_plan

        rows = rows_for_plan(self, run_id)
        self.store.put_results(rows, self.inp.recipe.name, {c.id for c in self.plan.cells})


def status_lines(path: Path) -> list[str]:
    """`quantsweep status` for a run on this machine (its status file), [] when there is none."""
    from orchestrator.execute.progress import fmt

    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    running = s["state"] == "running" and _alive(s["pid"])
    if running:
        state = f"running (pid {s['pid']})"
    elif s["state"] == "running":  # killed (-9, power): nothing recorded its end
        state = f"stopped (its process {s['pid']} is gone; `quantsweep run` resumes)"
    else:
        state = s["state"]
    eta = f", ETA {fmt(s['eta_s'])}" if running and s.get("eta_s") is not None else ""
    ok = s["cached"] - s.get("failed_before", 0) + s["finished"] - s["failed"]
    lines = [f"local  {s['recipe']}: {state}; {ok}/{s['jobs']} jobs done ({s['cached']} cached), "
             f"{s['failed']} failed this run{eta}"]
    if running:
        lines += [f"  {r['device']}: {r['job']} ({fmt(r['for_s'])})" for r in s["running"]]
    return lines


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True
