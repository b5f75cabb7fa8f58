"""Execute a plan: the coordinator, one for every back-end. It decides what runs (store + plan), keeps the
open jobs, skips those whose upstream failed, re-queues (out of memory, a damaged input), records every
outcome the moment it arrives, writes the result rows and one status file; an executor (local threads,
a Ray cluster) only starts the jobs it can place, hands back their outcomes and cancels. Only this module
writes the store.

A failing job becomes a recorded failure and the sweep goes on; jobs downstream of it are reported
failed for this run without being recorded, so they run once the cause is fixed. Artifacts appear
under their final names only when complete, so Ctrl-C or kill -9 loses at most the jobs in flight.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.execute import worker
from orchestrator.execute.executor import Executor, Finished
from orchestrator.execute.progress import Progress, make as make_progress
from orchestrator.files import remove_partials
from orchestrator import jobs as jobkinds, output
from orchestrator.jobs import spec as jobspec
from orchestrator.plan.graph import Job, Plan
from orchestrator.results.store import Store
from orchestrator.tools.toolchain import Toolchain
from orchestrator.workspace import Workspace

@dataclass
class Summary:
    cells: int = 0
    jobs_run: int = 0
    jobs_cached: int = 0
    failed: list = field(default_factory=list)  # (job label, reason)
    wall_s: float = 0.0
    tool_wall_s: float = 0.0


RESULTS_EVERY_S = 10  # how often a running sweep publishes its finished cells to `results`
STATUS_FILE = "status.json"  # what `quantsweep status` shows of a run, on this machine or a box
STATUS_EVERY_S = 0.5  # how often it is written while jobs end (a few hundred bytes; at most twice a second)


class Coordinator:
    def __init__(self, plan: Plan, ws: Workspace, store: Store, tc: Toolchain, executor: Executor | None = None, *,
                 quiet: bool = False, retry_failed: bool = False, rerun: tuple[str, ...] = (), found=None,
                 parallel: int = 1):
        from orchestrator.execute.local import LocalExecutor

        self.plan, self.ws, self.store, self.tc = plan, ws, store, tc
        self.inp = plan.inputs
        self.quiet, self.retry_failed, self.rerun = quiet, retry_failed, set(rerun)
        self.executor: Executor = executor or LocalExecutor(found, parallel, tuple(tc.backends) if tc else ("CPU",))
        self.threads = self.executor.threads
        self.jobs = {j.key: j for j in plan.jobs}
        self.failed: dict[str, str] = {}  # key -> reason, this run
        self.open: dict[str, Job] = {}    # jobs not recorded yet this run (running ones included)
        self.exclusive: set[str] = set()  # jobs that ran out of memory beside others: now run alone
        self.remade: dict[str, str] = {}  # artifacts made again before the sweep: key -> why
        self.progress: Progress = make_progress(0, quiet=True)
        self._specs: dict[str, jobspec.JobSpec] = {}
        self._results: dict[str, dict] = {}
        self._in_flight: set[str] = set()
        self._status: dict = {}            # what the status file is written from (run() fills it)
        self._published = 0.0              # when it was last written
        self._remade_now: set[str] = set()  # artifacts made again during it (once each)

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
        # needs it: a KLD is never measured on a damaged model or logits file (an executor whose artifacts
        # live elsewhere, on a cluster's nodes, checks them there)
        self.remade = {}
        changed = self.executor.artifacts_here
        while changed:
            changed = False
            for key in list(need):
                for dep in self.jobs[key].deps:
                    if dep in need or dep in self.remade or status.get(dep) != "done" \
                            or not jobkinds.makes_artifact(self.jobs[dep].kind):
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
        ref = jobkinds.output_ref(self.jobs[key])
        assert ref is not None, f"{key} makes no artifact"
        return self.worker_env().artifact(ref)

    def logits_read(self, todo: list[Job]) -> set[str]:
        """The reference-logits jobs done in an earlier run that jobs of `todo` read as they are."""
        keys = {j.key for j in todo}
        reads = {d for j in todo for d in j.deps if jobkinds.kind(self.jobs[d].kind).makes == "logits"}
        return {k for k in reads - keys if (rec := self.store.job(k)) is not None and rec["status"] == "done"}

    def _artifact_problem(self, key: str) -> str | None:
        """Why the artifact of the done job `key` cannot be used as it is, or None."""
        from orchestrator.files import sha256_file
        from orchestrator.tools.perplexity import logits_problem

        path, job = self.artifact_path(key), self.jobs[key]
        if not path.is_file():
            return f"{self.ws.relative(path)} is missing"
        made = self.recorded(key)["result"]
        if jobkinds.kind(job.kind).makes == "logits":
            problem = logits_problem(path, job.params.n_vocab, job.params.ctx)
            if problem and not problem.startswith("truncated"):
                return None  # not a file of ours at all: the executor's guard refuses it, naming it, untouched
        size, recorded = path.stat().st_size, made.get("file_bytes", made.get("logits_bytes"))
        if recorded is not None and size != recorded:
            return f"{self.ws.relative(path)} has {size} bytes, {recorded} when it was made"
        if made.get("sha256") and sha256_file(path, worker.hash_memo()) != made["sha256"]:
            return f"{self.ws.relative(path)} is not the file that was made (its sha256 differs)"
        if not made.get("sha256") and recorded is not None:
            # made by a run stopped before its hash (done beside the next tool) was recorded: hashed now
            self.store.amend_result(key, {"sha256": sha256_file(path, worker.hash_memo())})
        return None

    # -- running ---------------------------------------------------------------------------

    def run(self) -> Summary:
        t0 = time.monotonic()
        remove_partials(self.ws.artifacts)
        todo = self.to_run()
        summary = Summary(cells=len(self.plan.cells))
        summary.jobs_cached = len(self.plan.jobs) - len(todo)
        self.executor.begin(self, todo)  # its guards: nothing has started yet
        self.store.forget_failed([j.key for j in todo])  # failed jobs in todo are retried (--retry-failed, --rerun)
        for key, st in self.store.job_statuses(self.jobs).items():
            if st == "failed":  # recorded earlier and not retried: its dependents cannot run either
                self.failed[key] = self.recorded(key)["reason"]
        self.progress = progress = make_progress(len(todo), quiet=self.quiet, prior={
            k: w for k, (w, _) in self.store.kind_timings().items()})
        for key, problem in self.remade.items():  # said even with --quiet: a file of ours was damaged
            output.current().warn(f"{self.jobs[key].label}: {problem}; made again")
        if not todo:
            progress.say(f"all {len(self.plan.jobs)} jobs cached; nothing to run")
        run_id = self.store.start_run(self.inp.recipe.name, self.inp.recipe.canonical_hash(),
                                      self.inp.recipe.model_dump_json(), self.tc.describe(), self.inp.host)
        status = "interrupted"
        self._status = {"cached": summary.jobs_cached, "failed_before": len(self.failed)}
        self._publish_status("running")
        try:
            with progress:
                self._loop(todo, summary, run_id)
            status = "failed" if self.failed else "done"
        finally:
            self._publish_status(status)
            summary.wall_s = time.monotonic() - t0
            summary.failed = [(self.jobs[k].label, r) for k, r in self.failed.items()]
            self._write_results(run_id)
            self.store.finish_run(run_id, status, summary.jobs_run, len(self.failed), summary.wall_s,
                                  summary.tool_wall_s)
        return summary

    def _loop(self, todo: list[Job], summary: Summary, run_id: int) -> None:
        self.open = {j.key: j for j in todo}
        order = {j.key: i for i, j in enumerate(self.plan.jobs)}  # a job made again joins in plan order
        written = time.monotonic()
        ex = self.executor
        try:
            while True:
                for key in sorted(self.open.keys() - self._in_flight, key=lambda k: order[k]):
                    up = next((self.failed[d] for d in self.jobs[key].deps if d in self.failed), None)
                    if up is not None:
                        self.failed[key] = f"upstream failed: {up}"
                        self.progress.skip(self.jobs[key], self.failed[key])
                        del self.open[key]
                for s in ex.start(self, self.open, order):
                    self._in_flight.add(s.key)
                    self.progress.start(self.jobs[s.key], s.where)
                if not ex.busy():
                    if self.open:
                        raise RuntimeError(f"no job can start: {sorted(self.open)}")  # a bug, never a state
                    break  # the last jobs were skipped: their upstream failed
                for fin in ex.wait(self, RESULTS_EVERY_S):
                    self._record(fin, summary)
                if time.monotonic() - self._published >= STATUS_EVERY_S:
                    self._publish_status("running")
                if self.open and time.monotonic() - written > RESULTS_EVERY_S:
                    self._write_results(run_id)  # a report during the run shows the cells done so far
                    written = time.monotonic()
        except BaseException:  # Ctrl-C: every job in flight is stopped; none is recorded
            ex.cancel()
            raise
        ex.end()

    def requeue(self, key: str, msg: str) -> None:
        """A started job that will start again (out of memory, lost with a cluster's node): counted once."""
        if key in self._in_flight:
            self._in_flight.discard(key)
            self.progress.requeue(self.jobs[key], msg)
        else:
            self.progress.say(msg)

    def _record(self, fin: Finished, summary: Summary) -> None:
        """Record what a job's worker returned, or put it back among the open jobs to run again."""
        job, out, started = self.jobs[fin.started.key], fin.outcome, fin.started
        if fin.amends:  # the artifact's sha256, hashed beside the next tool: later readers check it
            self.store.amend_result(job.key, out.result)
            self.result(job.key).update(out.result)
            return
        summary.jobs_run += 1
        summary.tool_wall_s += out.result.get("tool_s", out.wall_s) if out.ok else out.wall_s
        if not out.ok and out.out_of_memory and started.on_device and job.key not in self.exclusive:
            # another job on the device may have taken the memory: once more, with the device alone
            self.exclusive.add(job.key)
            self._specs.pop(job.key, None)
            self.requeue(job.key, f"    out of memory on {started.where}: {job.label} re-queued with the device "
                                  "to itself")
            return
        bad = out.bad_input
        if not out.ok and bad in self.jobs and bad not in self._remade_now:
            # an artifact it reads was damaged (and removed) since the run began: made again, then this job
            self._remade_now.add(bad)
            for key in (bad, job.key, *(k for k in self.open if bad in self.jobs[k].deps)):
                self._specs.pop(key, None)  # built with the damaged file's record: built again
            self.open[bad] = self.jobs[bad]
            self.executor.forget(bad, started)
            self.progress.total += 1
            self.requeue(job.key, f"    {job.label}: {out.reason}; {self.jobs[bad].label} runs again first")
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
        self.open.pop(job.key, None)
        self._in_flight.discard(job.key)
        self.progress.end(job, out.wall_s, out.ok, list(self.open.values()), "" if out.ok else f": {out.reason}")

    def _publish_status(self, state: str) -> None:
        """Write what `quantsweep status` shows of this run, from another shell or from the laptop of a box:
        its state, the jobs done of the plan, failures, the ETA, what runs where, and the back-end's own
        view (a cluster's nodes). A few hundred bytes a job end."""
        from orchestrator.files import write_text_atomic

        self._published = time.monotonic()
        now = self.progress.snapshot()
        if state != "running" or not now["finished"]:
            now["eta_s"] = None  # none before a job has ended, and none once the run has
        state_doc = {"backend": self.executor.name, "recipe": self.inp.recipe.name, "pid": os.getpid(),
                     "state": state, "jobs": len(self.plan.jobs), "cached": self._status["cached"],
                     "to_run": self.progress.total, "failed_before": self._status["failed_before"],
                     **now, **self.executor.detail(), "updated": time.time()}
        try:
            write_text_atomic(self.ws.root / STATUS_FILE, json.dumps(state_doc, indent=1))
        except OSError:  # a status is a courtesy: a full disk must not end the sweep here
            pass

    # -- what executors ask of the coordinator -----------------------------------------------

    def spec(self, job: Job, upstream: dict[str, dict] | None = None) -> jobspec.JobSpec:
        """The job as data for a worker; `upstream`: the results it reads where they differ from the store's
        (a cluster node's own copies)."""
        if upstream is not None or job.key not in self._specs:
            read = {d: (upstream or {}).get(d) or self.result(d) for d in job.deps}
            spec = jobkinds.build_spec(job, self.plan, read, self.threads)
            if job.key in self.exclusive:
                spec = spec.model_copy(update={"resources": spec.resources.model_copy(update={"exclusive": True})})
            if upstream is not None:
                return spec
            self._specs[job.key] = spec
        return self._specs[job.key]

    def recorded(self, key: str) -> dict:
        """The store's record of a job known to be there."""
        rec = self.store.job(key)
        assert rec is not None, f"{key} is not in the store"
        return rec

    def result(self, key: str) -> dict:
        if key not in self._results:
            rec = self.store.job(key)
            self._results[key] = rec["result"] if rec else {}
        return self._results[key]

    def worker_env(self) -> worker.WorkerEnv:
        return worker.WorkerEnv(tool=self.tc.exe if self.tc else str, ws=self.ws, inputs=self.inputs())

    def inputs(self) -> dict[str, Path]:
        """The files a spec refers to by key: the source model, corpora, given imatrix files."""
        return self.plan.files

    # -- results rows ----------------------------------------------------------------------

    def _write_results(self, run_id: int) -> None:
        from orchestrator.results.rows import rows_for_plan

        rows = rows_for_plan(self, run_id)
        cells = {c.id for c in self.plan.cells} | {j.cell.id for j in self.plan.measured if j.cell is not None}
        self.store.put_results(rows, self.inp.recipe.name, cells)


def read_status(path: Path) -> dict | None:
    """The status file of a run on this machine, with `alive`: whether its process still runs (a run
    killed with -9 or by a power cut never recorded its end). None when there is none."""
    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {**s, "alive": s["state"] == "running" and _alive(s["pid"])}


def status_text(s: dict | None) -> list[str]:
    """`quantsweep status` for a run on this machine: one line, then what runs where (device or node)."""
    from orchestrator.execute.progress import fmt

    if s is None:
        return []
    running = s["alive"]
    if running:
        state = f"running (pid {s['pid']})"
    elif s["state"] == "running":  # killed (-9, power): nothing recorded its end
        state = f"stopped (its process {s['pid']} is gone; `quantsweep run` resumes)"
    else:
        state = s["state"]
    eta = f", ETA {fmt(s['eta_s'])}" if running and s.get("eta_s") is not None else ""
    ok = s["cached"] - s.get("failed_before", 0) + s["finished"] - s["failed"]
    where, mode = "local ", ""
    if s.get("backend") == "ray":
        where, mode = f"ray {s['address']} ", f" ({s['mode']})"
    lines = [f"{where} {s['recipe']}: {state}{mode}; {ok}/{s['jobs']} jobs done ({s['cached']} cached), "
             f"{s['failed']} failed this run{eta}"]
    shared = s.get("mode", "").startswith("shared")
    for n in s.get("nodes", []) if s["to_run"] else []:  # a run that ran nothing has nothing to say per node
        busy = "".join(f"; {what}: " + ", ".join(n[what]) for what in ("running", "queued")
                       if n.get(what) and running)  # queued: sent, held by Ray until its resources free
        weights = "" if shared else f"; weights {', '.join(n['weights']) or '—'}"  # anywhere, on a shared folder
        lines.append(f"  {n['host']} ({n['node'][:8]}, {', '.join(n['gpus']) or 'CPU'}): {n['done']} done, "
                     f"{n['failed']} failed{weights}{busy}")
    for n in s.get("lost", []):
        lines.append(f"  {n['host']} ({n['node'][:8]}): LOST mid-sweep after {n['done']} done; "
                     f"{', '.join(n['moved']) or 'nothing'} moved to {n['to'] or '—'}")
    if running and "nodes" not in s:
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
