"""The one subprocess boundary: every external program quantsweep starts goes through here.

Children get a clean environment (no LLAMA_ARG_* overrides, C locale), their own log files,
a timeout, and die with us: a killed quantsweep never leaves a tool writing behind its back.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_live: set[subprocess.Popen] = set()  # tools running now, from any thread
_live_lock = threading.Lock()


def kill_all() -> int:
    """Kill every tool still running (its whole process group): Ctrl-C of a run with jobs in flight."""
    with _live_lock:
        procs = list(_live)
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(procs)


@dataclass(frozen=True)
class ProcResult:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    wall_s: float
    timed_out: bool
    stdout_path: Path | None = None
    stderr_path: Path | None = None
    peak_rss: int = 0  # bytes: the tool's largest resident set (its own, not its children's)
    then: ProcResult | None = None  # the follow-up run that read this one's output (a job's `then`)

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.stderr.splitlines()[-n:])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a llama.cpp tool: reproducible, whatever the user's shell holds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAMA_ARG_")}
    env["LC_ALL"] = "C"
    # perplexity/imatrix also read ~/.config/llama.cpp/config.ini; point them at an empty place.
    env["XDG_CONFIG_HOME"] = env.get("QUANTSWEEP_TOOL_CONFIG_HOME", "/nonexistent-quantsweep-config")
    env.update(extra or {})
    return env


_prctl: Any
try:  # loaded once here: a dlopen in every forked child cost ~5 ms a job
    _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not Linux/glibc: the process group kill on interrupt still applies
    _prctl = None


def _die_with_parent() -> None:
    os.setsid()
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen, reaper: _Reaper | None = None) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if reaper is not None:
        reaper.wait(None)
    else:
        proc.wait()


def _signal_group(proc: subprocess.Popen) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class _Reaper:
    """Waits for a child with wait4, so that its resource usage (peak RSS) is known at its end; the
    Popen's returncode is set from the status, as its own wait would."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.peak_rss = proc, 0
        self._thread = threading.Thread(target=self._reap, name="quantsweep-reaper", daemon=True)
        self._thread.start()

    def _reap(self) -> None:
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:  # reaped elsewhere: Popen's own wait knows its code
            return
        self.peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
        self.proc.returncode = os.waitstatus_to_exitcode(status)

    def wait(self, timeout: float | None) -> bool:
        """True once the child has ended (within `timeout` seconds; None: however long)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        if self.proc.returncode is None:
            self.proc.wait()
        return True


def run(argv: list[str], *, log_dir: Path | None = None, name: str = "tool",
        timeout: float | None = None, cwd: Path | None = None,
        env: dict[str, str] | None = None, started=None) -> ProcResult:
    """Run argv (never a shell string) with stdout/stderr captured to files in log_dir; `started` (with
    log_dir) is handed a function that kills the tool, once it runs (a partner tool that died ends it).
    With a log_dir the tool runs in it (unless `cwd` says otherwise): a file a tool writes where it runs
    (ik_llama.cpp's llama-perplexity writes llama.log) stays with its logs, never in the user's folder."""
    argv = [str(a) for a in argv]
    if log_dir is None:
        return _run_piped(argv, timeout=timeout, cwd=cwd, env=env)
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    (log_dir / f"{name}.argv").write_text(" ".join(_quote(a) for a in argv) + "\n")
    start = time.monotonic()
    timed_out = False
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=cwd or log_dir, env=env if env is not None else child_env(),
                                preexec_fn=_die_with_parent)
        with _live_lock:
            _live.add(proc)
        reaper = _Reaper(proc)
        if started is not None:
            started(lambda: _signal_group(proc))
        try:
            if not reaper.wait(timeout):
                timed_out = True
                _kill_group(proc, reaper)
        except BaseException:  # Ctrl-C or our own shutdown: take the tool down with us
            _kill_group(proc, reaper)
            raise
        finally:
            with _live_lock:
                _live.discard(proc)
    wall = time.monotonic() - start
    return ProcResult(tuple(argv), proc.returncode, _read(out_path), _read(err_path), wall,
                      timed_out, out_path, err_path, reaper.peak_rss)


def _run_piped(argv, *, timeout, cwd, env) -> ProcResult:
    start = time.monotonic()
    try:
        cp = subprocess.run(argv, capture_output=True, timeout=timeout, cwd=cwd,
                            env=env if env is not None else child_env(),
                            stdin=subprocess.DEVNULL)
        rc, out, err, timed_out = cp.returncode, cp.stdout, cp.stderr, False
    except subprocess.TimeoutExpired as exc:
        rc, out, err, timed_out = -9, exc.stdout or b"", exc.stderr or b"", True
    dec = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
    return ProcResult(tuple(argv), rc, dec(out), dec(err), time.monotonic() - start, timed_out)


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_./=:,+@%" for c in arg) else repr(arg)
