"""Run one job spec on this machine: resolve its references, run the tool through the one subprocess
boundary, judge the output, publish the artifact atomically, and return an Outcome. It never writes
the store: the coordinator records what it returns."""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from orchestrator.inputs import gguf_info
from orchestrator.jobs import KINDS
from orchestrator import procs
from orchestrator.errors import ToolFailed
from orchestrator.execute.serve import ServedChunks
from orchestrator.execute.stream import Relay
from orchestrator.tools import perplexity as tp
from orchestrator.files import atomic_path, disk_of, remember_sha256, sha256_file
from orchestrator.tools.toolchain import cache_root
from orchestrator.jobs.spec import JobSpec, Outcome, Ref
from orchestrator.workspace import Workspace


@dataclass
class WorkerEnv:
    """Where references point on this machine."""

    tool: Callable[[str], str]                               # tool name -> executable
    ws: Workspace
    inputs: dict[str, Path] = field(default_factory=dict)    # input key -> file (source model, corpora…)

    def path(self, ref: Ref, output: Path | None = None) -> str:
        if ref.ref == "tool":
            return self.tool(ref.key)
        if ref.ref == "output":
            assert output is not None, "a spec without an output refers to one"
            return str(output)
        return str(self.artifact(ref))

    def artifact(self, ref: Ref) -> Path:
        if ref.ref == "input":
            return self.inputs[ref.key]
        if ref.ref == "model":
            return self.ws.model_path(ref.label, ref.key)
        if ref.ref == "imatrix":
            return self.ws.imatrix_path(ref.key)
        if ref.ref == "logits":
            return self.ws.logits_path(ref.key)
        raise ValueError(f"no path for {ref}")


Hash = Callable[[Callable[[], dict]], None]


def run(spec: JobSpec, env: WorkerEnv, *, device_env: dict[str, str] | None = None, device: str = "",
        hash_later: Hash | None = None) -> Outcome:
    """`hash_later`: where the sha256 of a published artifact is handed (a function to call, returning the
    result's amendment) so that it runs beside the next tool; without it, hashed here before returning."""
    if spec.feed is not None:  # its reference streamed: a gang of one
        return run_gang([spec], env, device_env=device_env, device=device)[0]
    log_dir = env.ws.log_dir(spec.key)
    final = env.artifact(spec.output) if spec.output is not None else None
    argv_text = ""
    t0 = time.monotonic()  # the job's time is all of it: checking inputs, the tool, describing the output
    try:
        try:
            if log_dir.exists():
                shutil.rmtree(log_dir)
            check_inputs(spec, env)
            if final is None:
                res, argv_text, result = _runs(spec, env, log_dir, device_env)
            else:
                with atomic_path(final) as tmp:
                    res, argv_text, result = _run_judged(spec, env, tmp, log_dir, device_env)
                    # before it gets its name: a model we cannot read is never published; what it is (size,
                    # sha256) is recorded, for every job that reads it later to check
                    result.update(describe_model(tmp) if KINDS[spec.kind].makes == "model" else
                                  {"file_bytes": tmp.stat().st_size})
                    if hash_later is None:
                        result.update(hash_artifact(tmp))
                if hash_later is None:
                    remember_sha256(final, result["sha256"], hash_memo())
                else:
                    hash_later(lambda: hash_artifact(final, memo=True))
        except OSError as exc:  # a tool that cannot start, a full disk: this job fails, the sweep goes on
            where = Path(exc.filename) if exc.filename else final.parent if final is not None else env.ws.root
            raise ToolFailed(_disk_full(where) or f"{type(exc).__name__}: {exc}", machine=True) from exc
    except ToolFailed as exc:
        if not hasattr(exc, "argv"):
            exc.argv = argv_text
        return _failure(spec, exc, log_dir, device)
    result["tool_s"] = round(res.wall_s, 4)
    if res.peak_rss:
        result["peak_rss_bytes"] = res.peak_rss
    return Outcome(key=spec.key, ok=True, result=result, artifact=str(final or ""), wall_s=time.monotonic() - t0,
                   argv=argv_text, log_dir=str(log_dir), device=device,
                   hashing=final is not None and hash_later is not None)


def hash_memo() -> Path:
    return cache_root() / "file-hashes.json"


def check_inputs(spec: JobSpec, env: WorkerEnv) -> None:
    """Every artifact the job reads is the file that was made: its size (free) and its sha256 (memoized by
    size and mtime, so read once) equal what was recorded then. A damaged one is removed, so the next
    `run` makes it again, and this job fails naming it (the coordinator may make it again at once)."""
    for e in spec.expect:
        path = env.artifact(e.ref)
        if not path.is_file():
            raise ToolFailed(f"input missing: {path.name} ({e.ref.ref} made by an earlier job) is not in "
                             f"{path.parent}", machine=True, bad_input=e.ref.key)
        size = path.stat().st_size
        if size != e.bytes:
            problem = f"{size} bytes, {e.bytes} when it was made"
        elif sha256_file(path, hash_memo()) != e.sha256:
            problem = "its sha256 differs from the one recorded when it was made"
        else:
            continue
        path.unlink(missing_ok=True)
        raise ToolFailed(f"input damaged: {path}: {problem}; removed, to be made again", machine=True,
                         bad_input=e.ref.key)


def describe_model(path: Path) -> dict:
    """What the results need of a model this worker made, read here while the file is fresh in the page
    cache and beside jobs on other devices, so the coordinator never reads the file again (and need not
    have it: the worker may run on another machine)."""
    t0 = time.monotonic()
    try:
        info = gguf_info.read(path)
    except Exception as exc:  # the tool wrote something its own format's reader rejects
        raise ToolFailed(f"output is not a readable GGUF: {type(exc).__name__}: {exc}") from exc
    return {"file_bytes": path.stat().st_size, "tensor_bytes": info.tensor_bytes, "type_bytes": info.type_bytes,
            "describe_s": round(time.monotonic() - t0, 4)}


STOP_HASHING = threading.Event()  # set when a run is interrupted: hashes beside it give up between two chunks


def hash_artifact(path: Path, memo: bool = False) -> dict:
    """An artifact's sha256 (with the time it took); `memo`: noted in the hash memo under its name, so a
    later check of it reads nothing."""
    t0 = time.monotonic()
    return {"sha256": sha256_file(path, hash_memo() if memo else None, stop=STOP_HASHING),
            "hash_s": round(time.monotonic() - t0, 4)}


def _runs(spec: JobSpec, env: WorkerEnv, log_dir: Path, device_env):
    """A measurement in as many runs as its kind asks (chunks: auto), each judged; the last run's logs are
    in log_dir, the earlier ones' in its run-N folders; the tool's time is theirs together."""
    kind, runs, wall = KINDS[spec.kind], [], 0.0
    while True:
        res, argv_text, result = _run_judged(spec, env, None, log_dir, device_env)
        runs.append(result)
        wall += res.wall_s
        nxt = kind.next_run(spec, result)
        if nxt is None:
            return replace(res, wall_s=wall), argv_text, kind.merge(runs)
        shutil.move(log_dir, log_dir.with_name(f"{log_dir.name}.run-{len(runs)}"))
        log_dir.mkdir(parents=True)
        shutil.move(log_dir.with_name(f"{log_dir.name}.run-{len(runs)}"), log_dir / f"run-{len(runs)}")
        spec = nxt


def _run_streamed(specs: list[JobSpec], env: WorkerEnv, log_dirs: list[Path], device_env):
    """The jobs' tools (a gang: one or more KLD runs with the same `feed`) and the reference run feeding them,
    side by side, the relay between them. When one ends before all the logits have passed, every other is
    stopped: none waits for a partner gone. Returns, per member, (its run, argv text, spec to judge it by,
    the problem that ends it whatever it printed or None, the relay's error) and the reference run's result."""
    assert specs and all(s.feed == specs[0].feed for s in specs)
    tool_env = procs.child_env(device_env) if device_env else None
    names = [s.label for s in specs]  # "kld Q4_K_M f16/f16": unique in a plan
    with Relay(env.ws.root / "tmp", [f"the {n} run" for n in names] if len(specs) > 1 else None) as relay:
        def resolve(a, i=0):
            if isinstance(a, str):
                return a
            if a.ref == "stream":
                return str(relay.source if a.key == "source" else relay.sinks[i])
            return env.path(a)

        feed = [resolve(a) for a in specs[0].feed or []]
        runs = {"reference": (feed, log_dirs[0], "reference")}
        for i, (n, s) in enumerate(zip(names, specs)):
            runs[n] = ([resolve(a, i) for a in s.argv], log_dirs[i], s.kind)
        kill: dict[str, Callable[[], None]] = {}
        ran: dict[str, procs.ProcResult] = {}
        gone: list[str] = []  # who ended before the stream was complete, first first
        ended = threading.Event()
        stopped: set[str] = set()

        def one(name: str) -> None:
            def started(k: Callable[[], None]) -> None:
                kill[name] = k
                if name in stopped:  # stopped before it began
                    k()

            args, log_dir, log_name = runs[name]
            try:
                ran[name] = procs.run(args, log_dir=log_dir, name=log_name, timeout=specs[0].timeout_s,
                                      env=tool_env, started=started)
            finally:
                ended.set()

        threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in runs]
        for t in threads:
            t.start()

        def stop(name: str) -> None:
            if name not in stopped and name not in ran:
                stopped.add(name)
                if name in kill:
                    kill[name]()

        try:
            while len(ran) < len(runs):
                ended.wait(0.5)
                ended.clear()
                gone += [n for n in ran if n not in gone and not relay.done and n not in stopped]
                readers_gone = [n for n in gone if n != "reference"]
                if readers_gone:  # a reader is gone: the gang stops (what the writer makes is lost to it)
                    for n in runs:
                        stop(n)
                    relay.release("sinks")
                if "reference" in ran and not relay.done and (ran["reference"].rc != 0 or not relay.alive):
                    relay.release("source")  # the logits stopped short: the readers wait for what never comes
                    for n in names:
                        stop(n)
        except BaseException:  # Ctrl-C: every tool goes down with us
            for k in kill.values():
                k()
            raise
    writer = ran["reference"]
    for d in log_dirs[1:]:  # each member's logs hold the reference run that fed it
        for suffix in ("argv", "stdout", "stderr"):
            if (log_dirs[0] / f"reference.{suffix}").exists():
                shutil.copyfile(log_dirs[0] / f"reference.{suffix}", d / f"reference.{suffix}")
    problem = None
    if "reference" not in stopped and (writer.rc != 0 or tp.parse_final(writer.stdout + writer.stderr) is None):
        why = tp.failure_reason(writer.stderr) or f"exit code {writer.rc}, no final estimate"
        problem = f"the reference run feeding it failed: {why}"
        sig = -writer.rc if writer.rc < 0 else writer.rc - 128 if writer.rc > 128 else 0  # 128+N: through a shell
        if sig in signal.valid_signals():  # killed (the out-of-memory killer…): the machine's, `run` retries it
            problem = f"the reference run feeding it was killed by {signal.Signals(sig).name}"
    first_reader = next((n for n in gone if n != "reference"), None)
    relay_error = f"streamed reference: {relay.error}" if relay.error else None
    out = []
    for name, spec in zip(names, specs):
        judge = spec.judge.model_copy(update={"base_ppl": relay.ppl, "chunks": relay.n_chunk or None})
        member_problem = problem
        if problem is None and first_reader is not None and first_reader != name:
            # a partner died: this run was stopped with it, whatever it printed
            member_problem = (f"stopped with its gang: the {first_reader} run on the same streamed reference "
                              f"ended first ({_ended(ran[first_reader])})")
        out.append((ran[name], " ".join(runs[name][0]) + "  <  " + " ".join(feed),
                    spec.model_copy(update={"judge": judge}), member_problem, relay_error))
    return out, writer


def with_threads(spec: JobSpec, n: int) -> JobSpec:
    """The spec with its tool and its feed on `n` threads each (a gang on the CPU shares the cores)."""
    def threads(argv: list) -> list:
        if "-t" in argv:
            i = argv.index("-t")
            return [*argv[:i + 1], str(n), *argv[i + 2:]]
        return [*argv, "-t", str(n)]

    return spec.model_copy(update={"argv": threads(spec.argv), "feed": threads(spec.feed or [])})


def _ended(res: procs.ProcResult) -> str:
    if res.rc < 0 and -res.rc in signal.valid_signals():
        return f"killed by {signal.Signals(-res.rc).name}"
    return tp.failure_reason(res.stderr) or f"exit code {res.rc}"


def run_gang(specs: list[JobSpec], env: WorkerEnv, *, device_env: dict[str, str] | None = None,
             device: str = "") -> list[Outcome]:
    """The KLD runs of one streamed reference (the same `feed`) read from a single reference run, together:
    one outcome per member. A member whose inputs are damaged fails alone; when any tool of the gang dies,
    every member is a failure naming which died and why (a plain `run` runs that gang again)."""
    t0 = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    members, dirs = [], []
    for spec in specs:
        log_dir = env.ws.log_dir(spec.key)
        try:
            if log_dir.exists():
                shutil.rmtree(log_dir)
            log_dir.mkdir(parents=True)
            check_inputs(spec, env)
            members.append(spec)
            dirs.append(log_dir)
        except ToolFailed as exc:
            outcomes[spec.key] = _failure(spec, exc, log_dir, device)
    if members:
        try:
            ran, writer = _run_streamed(members, env, dirs, device_env)
        except OSError as err:  # a tool that cannot start, a full disk
            cause = ToolFailed(_disk_full(env.ws.root) or f"{type(err).__name__}: {err}", machine=True)
            ran, writer = [], None
            for spec, log_dir in zip(members, dirs):
                outcomes[spec.key] = _failure(spec, cause, log_dir, device)
        final = tp.parse_final(writer.stdout + writer.stderr) if writer is not None else None
        for spec, log_dir, (res, text, judged, problem, relay_error) in zip(members, dirs, ran):
            try:
                if problem:
                    # killed, or stopped because a partner died: not this cell's doing, the next `run` retries it
                    failed = ToolFailed(problem, stderr_tail=res.tail(), machine="was killed by" in problem
                                        or problem.startswith("stopped with its gang"))
                    failed.wall_s, failed.argv = res.wall_s, text
                    raise failed
                res, text, result = _judged(judged, env, None, res, text, relay_error)
            except ToolFailed as exc:
                outcomes[spec.key] = _failure(spec, exc, log_dir, device)
                continue
            assert writer is not None
            result.update(streamed=True, feed_peak_rss_bytes=writer.peak_rss, feed_s=round(writer.wall_s, 4),
                          ppl_base_run=final[0] if final else None, gang=len(members), tool_s=round(res.wall_s, 4))
            if res.peak_rss:
                result["peak_rss_bytes"] = res.peak_rss
            outcomes[spec.key] = Outcome(key=spec.key, ok=True, result=result, wall_s=time.monotonic() - t0,
                                         argv=text, log_dir=str(log_dir), device=device)
    return [outcomes[s.key] for s in specs]


def _failure(spec: JobSpec, exc: ToolFailed, log_dir: Path, device: str) -> Outcome:
    oom = "out of memory" in exc.reason
    return Outcome(key=spec.key, ok=False, reason=exc.reason, stderr_tail=exc.stderr_tail,
                   wall_s=getattr(exc, "wall_s", 0.0), argv=getattr(exc, "argv", ""), log_dir=str(log_dir),
                   out_of_memory=oom, device=device, machine=exc.machine or oom, bad_input=exc.bad_input)


def _run_judged(spec: JobSpec, env: WorkerEnv, tmp: Path | None, log_dir: Path, device_env):
    with contextlib.ExitStack() as stack:
        served = []

        def resolve(a: Ref) -> str:
            if a.ref == "logits" and a.count:  # some of the file's chunks, through a pipe
                served.append(ServedChunks(env.artifact(a), a.first, a.count, env.ws.root / "tmp"))
                return str(stack.enter_context(served[-1]))
            return env.path(a, tmp)

        argv = [a if isinstance(a, str) else resolve(a) for a in spec.argv]
        text = " ".join(argv)
        res = procs.run(argv, log_dir=log_dir, name=spec.kind, timeout=spec.timeout_s,
                        env=procs.child_env(device_env) if device_env else None)
        if spec.then and res.rc == 0 and not res.timed_out:  # what reads its output, judged with it
            then = [a if isinstance(a, str) else str(log_dir / f"{spec.kind}.stdout") if a.ref == "stdout"
                    else resolve(a) for a in spec.then]
            res = replace(res, then=procs.run(then, log_dir=log_dir, name=f"{spec.kind}-then", timeout=600,
                                              env=procs.child_env(device_env) if device_env else None))
            text += "  &&  " + " ".join(then)
    fed = next((f"served reference chunks: {s.error}" for s in served if s.error), None)  # once it is released
    return _judged(spec, env, tmp, res, text, fed)


def _judged(spec: JobSpec, env: WorkerEnv, tmp: Path | None, res: procs.ProcResult, text: str, fed: str | None):
    try:
        if res.timed_out:
            raise ToolFailed(f"timed out after {spec.timeout_s / 60:g} min", stderr_tail=res.tail())
        disk = _disk_failure(res, tmp, env.ws.root)
        if disk:
            raise ToolFailed(disk, stderr_tail=res.tail(), machine=True)
        if res.rc < 0:
            raise ToolFailed(f"killed by {signal.Signals(-res.rc).name}" + (" (the host's out-of-memory killer?)"
                             if res.rc == -signal.SIGKILL else ""), stderr_tail=res.tail(), machine=True)
        try:
            result = _judge(spec, res, tmp)
            if fed:  # the tool printed statistics, yet not all the logits meant for it reached it
                raise ToolFailed(fed, stderr_tail=res.tail())
        except ToolFailed as exc:
            # tools report a full disk in their own words ("basic_ios::clear: iostream error", a logits file
            # cut short after exit 0): a failed job that wrote output looks at the disk it wrote to
            full = _disk_full(tmp.parent) if tmp is not None else None
            if full:
                raise ToolFailed(f"{full} ({exc.reason})", stderr_tail=exc.stderr_tail, machine=True) from None
            raise
    except ToolFailed as exc:
        exc.wall_s, exc.argv = res.wall_s, text
        raise
    return res, text, result


FULL_BYTES = 4 << 20  # free space under which a disk that a failed write went to counts as full


def _disk_full(where: Path) -> str | None:
    """'disk full: …' naming the disk, when the one `where` is on has (almost) nothing left, else None."""
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        return None
    return f"disk full: {disk_of(where)}; nothing of the output is kept" if free < FULL_BYTES else None


def _disk_failure(res: procs.ProcResult, out: Path | None, root: Path) -> str | None:
    """A tool that could not write its output: the disk is full, or the file outgrew the size limit."""
    where = out.parent if out is not None else root
    if res.rc == -signal.SIGXFSZ:
        size = out.stat().st_size if out is not None and out.exists() else 0
        name = out.name[1:].rsplit(".", 2)[0] if out is not None else "its output"  # .NAME.XXXX.partial
        return (f"disk: writing {name} stopped at {size / 2**20:.0f} MiB, the file-size limit (ulimit -f); "
                "nothing of it is kept")
    if "No space left on device" in res.stderr or "No space left on device" in res.stdout:
        return f"disk full: {disk_of(where)}; nothing of the output is kept"
    return None


def _judge(spec: JobSpec, res: procs.ProcResult, tmp: Path | None) -> dict:
    return KINDS[spec.kind].judge(spec.judge, res, tmp)
