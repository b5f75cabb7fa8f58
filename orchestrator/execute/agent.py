"""The box's side of `quantsweep run --host`: started over ssh by the laptop (orchestrator/execute/remote.py) with
the quantsweep installed on the box, never by a user.

A box keeps everything of quantsweep under one directory (ROOT): venvs, the cache (toolchain, model
hashes), one workspace for all its recipes (ROOT/ws, like a local one: what one recipe made, another
reuses; runs take it in turn), and one folder per recipe under ROOT/runs/NAME with the recipe, its uploaded
inputs, `run.log`, and the state of the detached run: `run.json` (the supervisor's pid, when it started)
and, once it has ended, `exit.json` (its exit status). The supervisor is started in a new
session (setsid), so neither the ssh connection nor the laptop going to sleep stops it; it runs
`quantsweep run` as its child and records how it ended.

    python -m orchestrator.execute.agent start RUNDIR [run options]   (env: a JSON object on stdin)
    python -m orchestrator.execute.agent status ROOT
    python -m orchestrator.execute.agent logs RUNDIR [-n N] [-f]
    python -m orchestrator.execute.agent stop RUNDIR
    python -m orchestrator.execute.agent export RUNDIR
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.files import write_text_atomic

PASSED_ENV = ("HF_TOKEN", "HF_ENDPOINT")  # what the laptop may pass through the channel (never argv)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (ended, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def state(rundir: Path) -> dict:
    """{"state": running | finished | stopped | new, "pid", "rc", "started_at", "finished_at"}: stopped by
    `quantsweep stop`, or killed with the box (then nothing recorded its end)."""
    info = _read_json(rundir / "run.json")
    ended = _read_json(rundir / "exit.json")
    if info is None:
        return {"state": "new"}
    if ended is not None and ended.get("token", ended.get("started_at")) == info.get("token", info.get("started_at")):
        return {**info, **ended, "state": "stopped" if ended.get("stopped") else "finished"}
    if _alive(int(info["pid"])):
        return {**info, "state": "running"}
    return {**info, "state": "stopped"}  # killed with the box, say: the next start resumes it


def workspace_of(rundir: Path) -> Path:
    """The workspace a run on this box uses: one per box root (ROOT/ws), shared by its recipes like a local
    one, so a reference, its logits and the models are made once for all; a run started by an earlier
    version keeps its own (RUNDIR/ws)."""
    own = rundir / "ws"
    return own if own.exists() else rundir.parent.parent / "ws"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def start(rundir: Path, run_args: list[str], env: dict[str, str]) -> dict:
    """Start the detached supervisor unless one already runs this recipe (then: attach to it). Under a
    lock on the run's folder: of starts that race (several `run --host` at once), one starts, the others
    attach."""
    import fcntl

    with open(rundir / ".start.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        now = state(rundir)
        if now["state"] == "running":
            return {**now, "attached": True}
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        token = os.urandom(8).hex()  # which start an exit.json ends (two may share a second)
        (rundir / STOP_FILE).unlink(missing_ok=True)
        child_env = {**os.environ, **{k: v for k, v in env.items() if k in PASSED_ENV}, "QUANTSWEEP_PLAIN": "1"}
        with open(rundir / "run.log", "ab") as log:
            log.write(f"--- quantsweep run started {started}\n".encode())
            log.flush()
            proc = subprocess.Popen([sys.executable, "-m", "orchestrator.execute.agent", "supervise", str(rundir),
                                     started, token, *run_args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=child_env, cwd=rundir, start_new_session=True)
        write_text_atomic(rundir / "run.json", json.dumps({"pid": proc.pid, "started_at": started, "token": token}))
    return {"state": "running", "pid": proc.pid, "started_at": started, "attached": False}


STOP_FILE = "stop.json"  # `quantsweep stop` was asked: the run's end is recorded as stopped


def stop(rundir: Path, wait_s: float = 60.0) -> dict:
    """End a running sweep as Ctrl-C would: SIGTERM to its supervisor and its run (their process group);
    the run kills its tools, keeps every result it recorded, and its end is recorded as stopped."""
    now = state(rundir)
    if now["state"] != "running":
        return now
    write_text_atomic(rundir / STOP_FILE, json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    pid = int(now["pid"])
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):  # a run that does not end on SIGTERM: its group is killed
        os.killpg(pid, signal.SIGKILL)
    return state(rundir)


def supervise(rundir: Path, started: str, token: str, run_args: list[str]) -> int:
    """Run the sweep as a child and record how it ended (the exit status `status` and `pull` report). Runs
    of several recipes share the box's workspace one after another: a run waits its turn."""
    import fcntl

    ws = workspace_of(rundir)
    argv = [sys.executable, "-m", "orchestrator.cli", "run", str(rundir / "recipe.yaml"), "--workspace", str(ws),
            *run_args]
    child: subprocess.Popen | None = None

    def forward(sig, _frame):
        if child is None:  # stopped while waiting its turn
            raise SystemExit(128 + sig)
        child.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    ws.mkdir(parents=True, exist_ok=True)
    turn = open(ws.parent / f".{ws.name}.turn", "a")  # held until this process ends
    rc = 0
    try:
        try:
            fcntl.flock(turn, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"--- waiting for {ws}: another recipe's run uses it", flush=True)
            fcntl.flock(turn, fcntl.LOCK_EX)
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        rc = child.wait()
    except SystemExit as exc:
        rc = int(exc.code or 1)
    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    stopped = (rundir / STOP_FILE).exists()
    write_text_atomic(rundir / "exit.json", json.dumps({"rc": rc, "started_at": started, "token": token,
                                                        "finished_at": finished, "stopped": stopped}))
    print(f"--- quantsweep run {'stopped' if stopped else 'ended'} {finished}: exit {rc}", flush=True)
    return rc


def progress(rundir: Path) -> dict:
    """done/failed/total jobs of the recipe and an ETA: from the status file the run writes as it goes
    (no plan made here), or, before its first run has started, from its plan and the workspace's store."""
    from orchestrator.plan import planner
    from orchestrator.inputs import prepare
    from orchestrator.tools import toolchain
    from orchestrator.execute.coordinator import STATUS_FILE
    from orchestrator.results.store import Store
    from orchestrator.workspace import Workspace
    from orchestrator.recipe import model as recipemod

    ws = Workspace(workspace_of(rundir))
    try:
        s = json.loads((ws.root / STATUS_FILE).read_text())
    except (OSError, ValueError):
        s = None
    if s is not None and s.get("recipe") == rundir.name:  # the workspace's last run: this recipe's
        failed = s.get("failed_before", 0) + s["failed"]
        return {"total": s["jobs"], "done": s["cached"] - s.get("failed_before", 0) + s["finished"] - s["failed"],
                "failed": failed, "eta_s": s["eta_s"], "running": s["running"]}
    try:
        flavor = recipemod.load(rundir / "recipe.yaml").toolchain
        inp = prepare.inputs(rundir / "recipe.yaml", ws, toolchain.find(flavor=flavor), fetch=False)
    except Exception as exc:  # inputs not fetched yet, a toolchain not built yet
        return {"total": None, "note": f"plan not known yet ({str(exc).splitlines()[0]})"}
    p = planner.build(inp)
    if not ws.store_path.exists():
        return {"total": len(p.jobs), "done": 0, "failed": 0, "eta_s": None}
    store = Store.read_only(ws.store_path)
    statuses = store.job_statuses([j.key for j in p.jobs])
    timings = store.kind_timings()
    left = [j for j in p.jobs if statuses.get(j.key) not in ("done", "failed")]
    eta = sum(timings.get(j.kind, (0.0, 0))[0] for j in left) if left else 0.0
    return {"total": len(p.jobs), "done": sum(s == "done" for s in statuses.values()),
            "failed": sum(s == "failed" for s in statuses.values()), "eta_s": round(eta, 1),
            "cells": len(p.cells)}


def status(root: Path) -> list[dict]:
    out = []
    for rundir in sorted((root / "runs").glob("*/")):
        if (rundir / "recipe.yaml").exists():
            out.append({"recipe": rundir.name, "rundir": str(rundir), **state(rundir), **progress(rundir)})
    return out


def export(rundir: Path) -> dict:
    """A consistent copy of the workspace's store (SQLite's online backup: a run may be writing), for
    the laptop to pull; written under a temporary name and renamed when complete."""
    src = workspace_of(rundir) / "store.sqlite"
    if not src.exists():
        return {"store": None}
    dest = rundir / "pull" / "store.sqlite"
    dest.parent.mkdir(exist_ok=True)
    tmp = dest.with_name(".store.sqlite.tmp")
    tmp.unlink(missing_ok=True)
    a, b = sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=30), sqlite3.connect(tmp)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()
    os.replace(tmp, dest)
    return {"store": str(dest), "bytes": dest.stat().st_size, **state(rundir)}


def logs(rundir: Path, n: int, follow: bool) -> int:
    """The last n lines of run.log; with follow, then every new line until the run has ended."""
    log = rundir / "run.log"
    if not log.exists():
        print(f"{rundir.name}: no log yet", file=sys.stderr)
        return 1
    parent = os.getppid()
    with open(log, "rb") as f:
        text = f.read()  # read to its end whatever n is: -n 0 -f follows from here, replaying nothing
        sys.stdout.buffer.write(b"".join(text.splitlines(keepends=True)[-n:]) if n else b"")
        sys.stdout.flush()
        while follow:
            if os.getppid() != parent:  # the ssh session that asked has gone: nothing reads us any more
                return 0
            chunk = f.read()
            if chunk:
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
            elif state(rundir)["state"] != "running":
                sys.stdout.buffer.write(f.read())
                break
            else:
                time.sleep(0.5)
    return int(state(rundir).get("rc") or 0)


def main(argv: list[str]) -> int:
    cmd, where, rest = argv[0], Path(argv[1]), argv[2:]
    if cmd == "start":
        env = json.loads(sys.stdin.read() or "{}")
        print(json.dumps(start(where, rest, env)))
    elif cmd == "supervise":
        return supervise(where, rest[0], rest[1], rest[2:])
    elif cmd == "stop":
        print(json.dumps(stop(where)))
    elif cmd == "status":
        print(json.dumps(status(where)))
    elif cmd == "export":
        print(json.dumps(export(where)))
    elif cmd == "logs":
        n = int(rest[rest.index("-n") + 1]) if "-n" in rest else 40
        return logs(where, n, "-f" in rest)
    else:
        print(f"agent: unknown command {cmd}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
