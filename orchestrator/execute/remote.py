"""`quantsweep run --host BOX`, `status`, `logs`, `pull`: a sweep on a box that `ssh` reaches.

Everything goes through the system's OpenSSH and rsync, so ~/.ssh/config, ProxyJump, agents and ports
work as they do for the user; quantsweep holds no password or key. QUANTSWEEP_SSH_ARGS adds options to
every ssh (and rsync's ssh), e.g. "-F ./ssh_config". Commands sent to the box are built from argv lists
(shlex-quoted); the Hugging Face token travels on the channel's stdin, never on a command line, and is
written nowhere.

On the box, one directory (--remote-dir, default ~/.quantsweep) holds this quantsweep version's venv, the
cache (toolchain, hashes) and one folder per recipe: see orchestrator/execute/agent.py.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator import __version__, output
from orchestrator.errors import QuantsweepError
from orchestrator.files import fits_disk, write_text_atomic

DEFAULT_ROOT = "~/.quantsweep"
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=15",
            "-o", "ServerAliveCountMax=4"]
MIN_PYTHON = (3, 10)
PROBE = r"""
import json, os, platform, shutil, subprocess, sys
root = os.path.abspath(os.path.expanduser(sys.argv[1]))
os.makedirs(root, exist_ok=True)
gpus = []
for argv in (["nvidia-smi", "-L"], ["rocm-smi", "--showproductname"]):
    if shutil.which(argv[0]):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        except Exception:
            out = ""
        gpus += [l.strip() for l in out.splitlines() if l.startswith("GPU")]
print(json.dumps({"python": list(sys.version_info[:3]), "os": platform.system(), "machine": platform.machine(),
                  "root": root, "free": shutil.disk_usage(root).free, "cpus": os.cpu_count(), "gpus": gpus,
                  "rsync": shutil.which("rsync") is not None}))
"""


class RemoteError(QuantsweepError):
    """The box cannot be used as asked (unreachable, refused, lacking): nothing was started."""

    exit_code = 2


@dataclass
class Box:
    target: str
    root: str = DEFAULT_ROOT  # absolute once probed

    @property
    def ssh_base(self) -> list[str]:
        return ["ssh", *SSH_OPTS, *shlex.split(os.environ.get("QUANTSWEEP_SSH_ARGS", ""))]

    # -- the two transports ------------------------------------------------------------------------

    def ssh(self, argv: list[str], *, stdin: str | None = None, capture: bool = True, prefix: str = "",
            timeout: float | None = None) -> subprocess.CompletedProcess:
        """`capture`: the command's output is returned; else it reaches this terminal as it comes (stderr too,
        line by line after `prefix`: a build's progress), and the returned stderr holds its last lines."""
        cmd = [*self.ssh_base, self.target, "--", shlex.join(str(a) for a in argv)]
        if capture:
            res = subprocess.run(cmd, input=stdin, text=True, timeout=timeout, capture_output=True)
        else:
            res = _passed_through(cmd, stdin, prefix)
        if res.returncode == 255:
            raise RemoteError(_ssh_failure(self.target, res.stderr))
        return res

    def rsync(self, src: str, dest: str, *extra: str, listing: str | None = None) -> None:
        """Files in either direction ("box:" marks the box's side); with `listing`, the files named in it
        (relative to src). A transfer cut short leaves its partial file in .rsync-partial (never under its
        own name) and the next one resumes it."""
        side = lambda p: f"{self.target}:{p[4:]}" if p.startswith("box:") else p  # noqa: E731
        argv = ["rsync", "-a", "--partial-dir=.rsync-partial", "-e", shlex.join(self.ssh_base), *extra,
                *(["--files-from=-"] if listing is not None else []), side(src), side(dest)]
        res = subprocess.run(argv, input=listing, capture_output=True, text=True)
        if res.returncode == 255 or "connection unexpectedly closed" in res.stderr and res.returncode:
            raise RemoteError(_ssh_failure(self.target, res.stderr))
        if res.returncode != 0:
            raise RemoteError(f"{self.target}: rsync {src} -> {dest} failed (rc {res.returncode}): "
                              f"{_last_line(res.stderr)}")

    # -- what the box has -------------------------------------------------------------------------

    def probe(self) -> dict:
        res = self.ssh(["python3", "-c", PROBE, self.root])
        if res.returncode != 0:
            if res.returncode == 127 or "not found" in res.stderr:
                raise RemoteError(f"{self.target}: no Python 3.10+ on the box (python3 not found); install "
                                  "python3 and python3-venv there")
            raise RemoteError(f"{self.target}: probing the box failed: {_last_line(res.stderr)}")
        info = json.loads(res.stdout.strip().splitlines()[-1])
        if tuple(info["python"]) < MIN_PYTHON:
            raise RemoteError(f"{self.target}: Python {'.'.join(map(str, info['python']))} on the box; "
                              "quantsweep needs 3.10 or newer")
        if not info["rsync"]:
            raise RemoteError(f"{self.target}: no rsync on the box; install it there (apt-get install rsync)")
        self.root = info["root"]
        return info

    def rundir(self, name: str) -> str:
        return f"{self.root}/runs/{name}"

    def env(self, llama_cpp: str | None) -> list[str]:
        """`env` before every quantsweep command on the box: its cache lives under the box's root."""
        pairs = [f"QUANTSWEEP_CACHE={self.root}/cache"]
        if llama_cpp:  # the tools the recipe measures with, whichever toolchain it names
            pairs += [f"QUANTSWEEP_LLAMA_CPP={llama_cpp}", f"QUANTSWEEP_IK_LLAMA_CPP={llama_cpp}"]
        return ["env", *pairs]

    # -- installing quantsweep and the tools ---------------------------------------------------------

    def home(self) -> tuple[str, str]:
        """Where this exact quantsweep (its source, hashed) lives on the box, and that hash."""
        digest = hashlib.sha256(b"".join(p.relative_to(_source_root()).as_posix().encode() + p.read_bytes()
                                         for p in _source_files())).hexdigest()[:12]
        return f"{self.root}/qs/{__version__}-{digest}", digest

    def has(self, pattern: str) -> bool:
        """Whether a path matching `pattern` (`*` its only wildcard) exists on the box."""
        quoted = "*".join(shlex.quote(part) for part in pattern.split("*"))
        return self.ssh(["sh", "-c", f"ls -d {quoted} >/dev/null 2>&1"]).returncode == 0

    def install(self, log) -> str:
        """This exact quantsweep in a venv of its own on the box; its python."""
        src_files = _source_files()
        home, digest = self.home()
        python = f"{home}/venv/bin/python"
        if self.ssh(["test", "-e", f"{home}/venv/.installed"]).returncode == 0:
            return python
        log(f"{self.target}: installing quantsweep {__version__} ({digest}) in {home}/venv")
        self.ssh(["mkdir", "-p", f"{home}/src"])
        listing = "\n".join(p.relative_to(_source_root()).as_posix() for p in src_files)
        self.rsync(str(_source_root()), f"box:{home}/src/", listing=listing)
        steps = [["python3", "-m", "venv", f"{home}/venv"],
                 [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{home}/src"],
                 ["touch", f"{home}/venv/.installed"]]
        res = self.ssh(["sh", "-c", " && ".join(shlex.join(s) for s in steps)])
        if res.returncode != 0:
            hint = (f"the box's disk is full in {self.root}" if "No space left" in res.stderr
                    else "does the box have python3-venv and reach PyPI?")
            raise RemoteError(f"{self.target}: installing quantsweep in {home}/venv failed: {_last_line(res.stderr)}"
                              f" ({hint})")
        return python

    def toolchain(self, python: str, llama_cpp: str | None, log, flavor: str = "mainline") -> dict:
        """The tools on the box: those at llama_cpp, else built there (cached; CUDA when the box has it)."""
        qs = [*self.env(llama_cpp), python, "-m", "orchestrator.cli"]
        ik = ["--ik"] if flavor == "ik" else []
        if llama_cpp is None:  # found in the box's cache (said so), or built there, its progress said as it goes
            res = self.ssh([*qs, "toolchain", "build", *ik], capture=False, prefix=f"quantsweep: {self.target}: ")
            if res.returncode != 0:
                raise RemoteError(f"{self.target}: building the llama.cpp tools failed: {_last_line(res.stderr)}")
        res = self.ssh([*qs, "toolchain", "show", "--json", *ik])
        if res.returncode != 0:
            raise RemoteError(f"{self.target}: no llama.cpp tools: {_last_line(res.stderr)}")
        return json.loads(res.stdout)

    # -- a run ----------------------------------------------------------------------------------------

    def agent(self, python: str, llama_cpp: str | None, *argv: str, stdin: str | None = None,
              capture: bool = True) -> subprocess.CompletedProcess:
        return self.ssh([*self.env(llama_cpp), python, "-m", "orchestrator.execute.agent", *argv], stdin=stdin,
                        capture=capture)


def _source_root() -> Path:
    import orchestrator

    return Path(orchestrator.__file__).resolve().parents[1]


def _source_files() -> list[Path]:
    root = _source_root()
    files = [root / "pyproject.toml", root / "README.md"]
    files += sorted(p for p in (root / "orchestrator").rglob("*.py"))
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise RemoteError(f"quantsweep's source is not beside it ({missing[0]}): --host needs a source checkout "
                          "or an sdist install")
    return files


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _passed_through(cmd: list[str], stdin: str | None, prefix: str) -> subprocess.CompletedProcess:
    """Run cmd with its stdout on ours and each of its stderr lines on ours as it comes, keeping the last."""
    tail: collections.deque[str] = collections.deque(maxlen=20)
    with subprocess.Popen(cmd, text=True, stdin=subprocess.PIPE if stdin is not None else None,
                          stderr=subprocess.PIPE) as proc:
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(prefix + line)
            sys.stderr.flush()
            tail.append(line)
    return subprocess.CompletedProcess(cmd, proc.returncode, None, "".join(tail))


def _ssh_failure(target: str, stderr: str) -> str:
    line = _last_line(stderr)
    low = stderr.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        return (f"{target}: authentication refused ({line}); quantsweep uses your ssh keys, agent and "
                f"~/.ssh/config: `ssh {target}` must log in without a password prompt")
    if "host key verification failed" in low or "remote host identification has changed" in low:
        return f"{target}: the box's host key is not known or has changed ({line}); check it with `ssh {target}`"
    if any(s in low for s in ("could not resolve", "connection refused", "timed out", "no route to host",
                              "network is unreachable", "connection closed", "connection reset")):
        return f"{target}: host unreachable ({line})"
    return f"{target}: ssh failed ({line})"


# ---------------------------------------------------------------------------------------------------
# what the laptop keeps: which recipes run on which boxes (for `status` and `pull` without --host)


def _hosts_file(ws) -> Path:
    return ws.root / "hosts.json"


def remember(ws, box: Box, name: str, llama_cpp: str | None, python: str) -> None:
    known = known_hosts(ws)
    entry = known.setdefault(box.target, {"root": box.root, "recipes": {}})
    entry["root"] = box.root  # the last one used (a workspace written by an earlier version has only this)
    entry["recipes"][name] = {"python": python, "llama_cpp": llama_cpp, "root": box.root}  # each run its own
    ws.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(_hosts_file(ws), json.dumps(known, indent=2))


def remembered_root(ws, target: str, name: str) -> str | None:
    """The folder on `target` where this workspace last ran recipe `name`: a later `run --host` without
    --remote-dir goes on there rather than bootstrapping the default one again."""
    entry = known_hosts(ws).get(target)
    if entry is None or name not in entry["recipes"]:
        return None
    return entry["recipes"][name].get("root", entry["root"])


def known_hosts(ws) -> dict:
    try:
        return json.loads(_hosts_file(ws).read_text())
    except (OSError, ValueError):
        return {}


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:80]


# ---------------------------------------------------------------------------------------------------
# uploading a recipe and what only the laptop has


def remote_recipe(recipe_path: Path) -> tuple[dict, list[tuple[Path, str]]]:
    """The recipe as the box will read it (its `extends:` chain merged), with every local file it names
    replaced by its place under inputs/; and the files to upload: (local path, path under the run dir).
    A split model's shards keep their names, side by side."""
    from orchestrator.recipe import model as recipemod
    from orchestrator.inputs.gguf_info import shard_paths
    from orchestrator.recipe.load import load_yaml

    r = recipemod.load(recipe_path)
    rdir = Path(recipe_path).resolve().parent
    data = load_yaml(Path(recipe_path), chain=())
    files: list[tuple[Path, str]] = []

    def upload(path: str) -> str:
        local = (rdir / Path(path).expanduser()).resolve()
        where = f"inputs/{len(files)}"
        files.extend((f, f"{where}/{f.name}") for f in shard_paths(local))
        return f"{where}/{local.name}"

    if r.model.path is not None:
        data["model"] = {**data["model"], "path": upload(r.model.path)}
    ev = data.get("evaluation") or {}
    if r.evaluation.corpus.path is not None:
        ev["corpus"] = {"path": upload(r.evaluation.corpus.path)}
    for i, w in enumerate(r.weights):
        item = data["weights"][i]
        if w.imatrix is None or not isinstance(item, dict) or not isinstance(item.get("imatrix"), dict):
            continue
        im = dict(item["imatrix"])
        if w.imatrix.file is not None:
            im["file"] = upload(w.imatrix.file)
        elif w.imatrix.corpus is not None and w.imatrix.corpus.path is not None:
            im["corpus"] = {"path": upload(w.imatrix.corpus.path)}
        data["weights"][i] = {**item, "imatrix": im}
    return data, files


VENV_BYTES = 600 << 20       # quantsweep's venv on a box (measured: 521 MB with its dependencies)
TOOLCHAIN_BYTES = 600 << 20  # a llama.cpp build in the box's cache (measured: 474 MB for a CPU build)


def _artifact_bytes(recipe_path: Path, ws, box_free: int) -> tuple[int, int] | None:
    """What the sweep's workspace on the box will hold, as far as the laptop can know it (the model at hand
    here): (every artifact — the reference model, the quantized ones, importance matrices, reference logits —,
    of which reference logits), planned against the box's free disk (logits: auto streams what it cannot
    hold). A recipe this machine can tell is wrong (a ctx beyond the model's) stops here, before the box."""
    import dataclasses

    from orchestrator.errors import EnvironmentProblem, InputFileError
    from orchestrator.plan import planner
    from orchestrator.inputs import prepare
    from orchestrator.tools import toolchain

    from orchestrator.recipe import model as recipemod

    try:
        inp = prepare.inputs(recipe_path, ws, toolchain.find(flavor=recipemod.load(recipe_path).toolchain),
                             fetch=False)
    except (EnvironmentProblem, InputFileError):  # not at hand here (a model the box downloads): the box checks
        return None
    p = planner.build(dataclasses.replace(inp, disk_free=box_free))
    return p.disk_bytes(j.key for j in p.jobs), p.logits_bytes()


def _disk_parts(box: Box, recipe_path: Path, ws, files, llama_cpp: str | None, box_free: int
                ) -> list[tuple[str, int]]:
    """Everything a sweep puts on the box's disk: its venv and the llama.cpp build unless there already, the
    uploads, and the workspace's artifacts."""
    parts = [("uploads", sum(p.stat().st_size for p, _ in files))]
    if not box.has(f"{box.home()[0]}/venv/.installed"):
        parts.append(("quantsweep's venv", VENV_BYTES))
    if llama_cpp is None and not box.has(f"{box.root}/cache/toolchains/*/toolchain.json"):
        parts.append(("the llama.cpp build", TOOLCHAIN_BYTES))
    made = _artifact_bytes(recipe_path, ws, box_free)
    if made is not None:
        parts += [("models", made[0] - made[1]), ("reference logits", made[1])]
    return [(what, n) for what, n in parts if n]


def run_on(target: str, recipe_path: Path, workspace, *, remote_dir: str | None, llama_cpp: str | None,
           cpu: bool, detach: bool, run_args: list[str]) -> int:
    """Check the box, install quantsweep and the tools there, upload, start the sweep detached, follow it."""
    import yaml

    from orchestrator.recipe import model as recipemod
    from orchestrator.inputs import prepare
    from orchestrator.workspace import Workspace

    r = recipemod.load(recipe_path)  # a bad recipe stops here, before the box is touched
    prepare.check_local_files(r, recipe_path)
    ws = Workspace(workspace)
    box = Box(target, remote_dir or os.environ.get("QUANTSWEEP_REMOTE_DIR") or remembered_root(ws, target, r.name)
              or DEFAULT_ROOT)
    info = box.probe()
    say = lambda m: output.current().err(f"quantsweep: {m}")  # noqa: E731
    if not info["gpus"] and not cpu:
        raise RemoteError(f"{target}: no GPU found on the box (nvidia-smi/rocm-smi list none); add --cpu to "
                          "sweep on its CPU")
    data, files = remote_recipe(recipe_path)
    upload = sum(p.stat().st_size for p, _ in files)
    parts = _disk_parts(box, recipe_path, ws, files, llama_cpp, info["free"])
    if not fits_disk(sum(n for _, n in parts), info["free"]):
        what = " + ".join(f"{n / 2**30:.2f} GiB of {w}" for w, n in parts)
        raise RemoteError(f"{target}: the box has {info['free'] / 2**30:.2f} GiB free in {box.root} but the "
                          f"sweep needs {what}; lower evaluation.chunks, free space there, or use another "
                          "--remote-dir")
    say(f"{target}: {info['os']} {info['machine']}, Python {'.'.join(map(str, info['python']))}, "
        f"{info['cpus']} CPUs, {len(info['gpus'])} GPU(s), {info['free'] / 2**30:.1f} GiB free in {box.root}")
    rundir = box.rundir(r.name)
    python = box.install(say)
    running = json.loads(box.agent(python, llama_cpp, "status", box.root).stdout or "[]")
    now = next((x for x in running if x["recipe"] == r.name), None)
    if now is None or now["state"] != "running":
        tc = box.toolchain(python, llama_cpp, say, r.toolchain)
        title = "ik_llama.cpp" if r.toolchain == "ik" else "llama.cpp"
        say(f"{target}: {title} {tc.get('commit')} ({', '.join(tc.get('backends', []))}) at {tc.get('bin_dir')}")
        box.ssh(["mkdir", "-p", f"{rundir}/inputs"])
        if files:
            say(f"{target}: uploading {len(files)} file(s), {upload / 2**20:.0f} MiB (resumable)")
            box.rsync("/", f"box:{rundir}/.upload/", listing="\n".join(str(p).lstrip("/") for p, _ in files))
            moves = [["mkdir", "-p", str(Path(f"{rundir}/{dest}").parent)] for _, dest in files]
            moves += [["ln", "-f", f"{rundir}/.upload/{str(p).lstrip('/')}", f"{rundir}/{dest}"] for p, dest in files]
            res = box.ssh(["sh", "-c", " && ".join(shlex.join(m) for m in moves)])
            if res.returncode != 0:
                raise RemoteError(f"{target}: placing the uploads failed: {_last_line(res.stderr)}")
        text = yaml.safe_dump(data, sort_keys=False)
        res = box.ssh(["sh", "-c", f"cat > {shlex.quote(rundir + '/.recipe.yaml')} && "
                       f"mv {shlex.quote(rundir + '/.recipe.yaml')} {shlex.quote(rundir + '/recipe.yaml')}"],
                      stdin=text)
        if res.returncode != 0:
            raise RemoteError(f"{target}: writing the recipe failed: {_last_line(res.stderr)}")
    secrets = {k: os.environ[k] for k in ("HF_TOKEN", "HF_ENDPOINT") if os.environ.get(k)}
    remember(ws, box, r.name, llama_cpp, python)  # before it starts: a client gone at once leaves it findable
    res = box.agent(python, llama_cpp, "start", rundir, *run_args, stdin=json.dumps(secrets))
    if res.returncode != 0:
        raise RemoteError(f"{target}: starting the run failed: {_last_line(res.stderr)}")
    started = json.loads(res.stdout.strip().splitlines()[-1])
    verb = "attached to the run" if started.get("attached") else "started"
    say(f"{target}: {verb} {r.name} (pid {started['pid']} on the box, since {started['started_at']}); it goes on "
        f"if this connection drops: `quantsweep status`, `quantsweep logs -f {r.name}`, `quantsweep pull`")
    if detach:
        return 0
    return follow(box, python, llama_cpp, "logs", rundir, "-n", "0" if not started.get("attached") else "20", "-f")


def _entries(ws, host: str | None, name: str | None) -> list[tuple[Box, str, dict]]:
    known = known_hosts(ws)
    if host is not None and host not in known:
        raise RemoteError(f"{host}: no recipe of this workspace ({ws.root}) was started there; "
                          "`quantsweep run RECIPE --host` it first")
    out = []
    for target, entry in known.items():
        if host not in (None, target):
            continue
        for recipe, meta in entry["recipes"].items():
            if name in (None, recipe):
                out.append((Box(target, meta.get("root", entry["root"])), recipe, meta))
    if not out:
        raise RemoteError(f"no remote run {'of ' + name + ' ' if name else ''}is known to {ws.root}")
    return out


def status(workspace, host: str | None) -> list[dict]:
    """The runs this workspace started on boxes, as each box's agent reports them (an unreachable box:
    one entry with its error)."""
    from orchestrator.workspace import Workspace

    ws = Workspace(workspace)
    seen: set[tuple[str, str, str]] = set()
    runs: list[dict] = []
    for box, _recipe, meta in _entries(ws, host, None):
        if (box.target, box.root, meta["python"]) in seen:  # each root of a box is asked once
            continue
        seen.add((box.target, box.root, meta["python"]))
        try:
            res = box.agent(meta["python"], meta.get("llama_cpp"), "status", box.root)
        except RemoteError as exc:
            runs.append({"box": box.target, "error": str(exc)})
            continue
        runs += [{"box": box.target, **run} for run in json.loads(res.stdout or "[]")]
    return runs


def status_text(runs: list[dict]) -> list[str]:
    from orchestrator.execute.progress import fmt

    lines = []
    for run in runs:
        if "error" in run:  # the error names the box already
            lines.append(run["error"] if run["error"].startswith(run["box"]) else f"{run['box']}: {run['error']}")
            continue
        total = run.get("total")
        done = (f"{run['done']}/{total} jobs done, {run['failed']} failed" if total is not None
                else run.get("note", ""))
        eta = f", ETA {fmt(run['eta_s'])}" if run["state"] == "running" and run.get("eta_s") else ""
        ended = f" (exit {run['rc']} at {run['finished_at']})" if run["state"] == "finished" else ""
        lines.append(f"{run['box']}  {run['recipe']}: {run['state']}{ended}; {done}{eta}")
    return lines


def _one(workspace, host: str | None, name: str | None) -> tuple[Box, str, dict]:
    from orchestrator.workspace import Workspace

    entries = _entries(Workspace(workspace), host, name)
    if len(entries) > 1:
        raise RemoteError("several remote runs: name one (" + ", ".join(f"{r} on {b.target}" for b, r, _ in entries)
                          + ")")
    return entries[0]


FOLLOWING = ("quantsweep: stopped following; the run goes on on the box (`quantsweep logs -f` follows it again, "
             "`quantsweep stop --host` ends it)")


def follow(box: Box, python: str, llama_cpp: str | None, *args: str) -> int:
    """The box's log as it grows; Ctrl-C here stops following, not the run."""
    try:
        return box.agent(python, llama_cpp, *args, capture=False).returncode
    except KeyboardInterrupt:
        output.current().err(FOLLOWING)
        return 0


def logs(workspace, host: str | None, name: str | None, follow_it: bool, lines: int) -> int:
    box, recipe, meta = _one(workspace, host, name)
    args = ["logs", box.rundir(recipe), "-n", str(lines)] + (["-f"] if follow_it else [])
    return follow(box, meta["python"], meta.get("llama_cpp"), *args)


def stop(workspace, host: str | None, name: str | None, out) -> int:
    """End a run on a box as Ctrl-C would end a local one: its tools die, what it recorded stays, and
    `status` says stopped; `run --host` resumes it."""
    box, recipe, meta = _one(workspace, host, name)
    res = box.agent(meta["python"], meta.get("llama_cpp"), "stop", box.rundir(recipe))
    if res.returncode != 0:
        raise RemoteError(f"{box.target}: stopping {recipe} failed: {_last_line(res.stderr)}")
    now = json.loads(res.stdout.strip().splitlines()[-1])
    if now["state"] == "stopped":
        out(f"{box.target}  {recipe}: stopped (exit {now.get('rc')}); its results are kept, `quantsweep run "
            f"--host {box.target}` resumes it")
        return 0
    out(f"{box.target}  {recipe}: not running ({now['state']}); nothing to stop")
    return 0


def pull(workspace, host: str | None, name: str | None, artifacts: bool, out) -> int:
    """Merge the box's results into the local store: each row as the box recorded it (host, GPU,
    toolchain), the box named in its provenance; rows already held unchanged are not written again."""
    from orchestrator.results.store import Store
    from orchestrator.workspace import Workspace

    ws = Workspace(workspace)
    for box, recipe, meta in _entries(ws, host, name):
        res = box.agent(meta["python"], meta.get("llama_cpp"), "export", box.rundir(recipe))
        info = json.loads(res.stdout.strip().splitlines()[-1]) if res.returncode == 0 else {}
        if not info.get("store"):
            why = _last_line(res.stderr) if res.returncode else "no store"
            out(f"{box.target}  {recipe}: nothing to pull yet ({why})")
            continue
        local = ws.root / "pulls" / safe(box.target) / f"{safe(recipe)}.sqlite"
        local.parent.mkdir(parents=True, exist_ok=True)
        box.rsync(f"box:{info['store']}", str(local))
        with ws.lock():
            added, same = merge(Store(ws.store_path), Store.read_only(local), recipe, box.target)
        if artifacts:
            ws.artifacts.mkdir(parents=True, exist_ok=True)
            box.rsync(f"box:{box.rundir(recipe)}/ws/artifacts/", f"{ws.artifacts}/")
        state = info.get("state", "?")
        out(f"{box.target}  {recipe}: {added} rows pulled, {same} already here; the run is {state}"
            + (f"; artifacts in {ws.artifacts}" if artifacts else ""))
    return 0


def merge(store, theirs, recipe: str, host: str) -> tuple[int, int]:
    """Rows of `recipe` from another store into `store`, a (cell, measurement) group at a time: a group
    held here with the same content is left as it is. Returns (rows written, rows already held)."""
    def groups(rows: list[dict]) -> dict[tuple, list[dict]]:
        out: dict[tuple, list[dict]] = {}
        for row in rows:
            out.setdefault((row["cell_id"], row["measurement"]), []).append(row)
        return out

    def plain(names, cur, extra: dict) -> list[dict]:
        rows = []
        for values in cur.fetchall():
            row = dict(zip(names, values))
            row.pop("id", None)
            row.update({**json.loads(row.pop("extra_json", None) or "{}"), **extra})
            rows.append(row)
        return rows

    def signature(rows: list[dict]) -> list[str]:
        return sorted(json.dumps({k: v for k, v in r.items() if k != "run_id"}, sort_keys=True, default=str)
                      for r in rows)

    incoming = groups(plain(*theirs.rows(recipe), {"pulled_from": host, "run_id": None}))
    held = groups(plain(*store.rows(recipe), {}))
    new = [row for key, rows in incoming.items()
           if key not in held or signature(held[key]) != signature(rows) for row in rows]
    if new:
        store.put_results(new)
    return len(new), sum(len(rows) for rows in incoming.values()) - len(new)
