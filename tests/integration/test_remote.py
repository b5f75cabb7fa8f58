"""`run --host` for real: an OpenSSH server on 127.0.0.1 with a throwaway key, a directory as "the box",
the system's ssh and rsync, the real tools on the demo model. Skipped, saying why, where sshd or rsync
is missing (.ci/run installs both)."""

import getpass
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.results.store import Store

from ..helpers import small_recipe, tools_running_on

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A throwaway sshd on the loopback: (target, the ssh options a user would keep in ~/.ssh/config)."""
    missing = [t for t in ("ssh", "rsync") if shutil.which(t) is None] + ([] if Path(SSHD).exists() else ["sshd"])
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: openssh-server, openssh-client, rsync; "
                    ".ci/run installs them)")
    t = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "id"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(t / key)], check=True)
    shutil.copy(t / "id.pub", t / "authorized_keys")
    (t / "authorized_keys").chmod(0o600)
    Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
    port = _free_port()
    (t / "sshd_config").write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {t}/host_key\n"
                                   f"AuthorizedKeysFile {t}/authorized_keys\nPasswordAuthentication no\n"
                                   f"PidFile {t}/sshd.pid\nStrictModes no\nUsePAM no\n")
    proc = subprocess.run([SSHD, "-f", str(t / "sshd_config"), "-E", str(t / "sshd.log")], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"sshd would not start here: {proc.stderr.strip()[:200]}")
    opts = (f"-p {port} -i {t}/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            f"-o LogLevel=ERROR")
    for _ in range(50):
        if subprocess.run(["ssh", *opts.split(), "-o", "BatchMode=yes", f"{getpass.getuser()}@127.0.0.1",
                           "true"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    yield f"{getpass.getuser()}@127.0.0.1", opts, t, port
    os.kill(int((t / "sshd.pid").read_text()), signal.SIGTERM)


def qs(*args, env_extra=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *map(str, args)], cwd=REPO, text=True,
                          capture_output=True, env={**os.environ, **(env_extra or {})}, **kw)


@pytest.fixture
def box(sshd, monkeypatch, tmp_path, tools):
    target, opts, _, _ = sshd
    monkeypatch.setenv("QUANTSWEEP_SSH_ARGS", opts)
    root = tmp_path / "box"
    return target, ["--remote-dir", str(root), "--remote-llama-cpp", str(tools.bin_dir), "--cpu"], root


def test_a_sweep_on_the_box_survives_its_client_and_pulls_the_numbers_of_a_local_run(box, tmp_path, demo_model):
    target, flags, root = box
    recipe = small_recipe(tmp_path, demo_model, name="boxed", weights=("Q8_0", "Q2_K"), bench=False, chunks=3,
                          pairs=(("f16", "f16"), ("q8_0", "q4_0")))
    ws = tmp_path / "laptop"
    client = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(recipe), "--workspace", str(ws),
                               "--host", target, *flags], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    rundir = root / "runs" / "boxed"
    deadline = time.time() + 300
    while not (root / "ws" / "store.sqlite").exists() and time.time() < deadline:  # one workspace per box root
        time.sleep(0.2)
    client.kill()  # the laptop goes away mid-sweep
    client.wait()
    assert not (rundir / "exit.json").exists(), "killed before the sweep ended"

    st = qs("status", "--workspace", ws)
    assert st.returncode == 0 and f"{target}  boxed: running;" in st.stdout

    again = qs("run", recipe, "--workspace", ws, "--host", target, *flags, "--detach")
    assert again.returncode == 0 and "attached to the run boxed" in again.stderr  # not a second run

    # stopped from the laptop: its tools die, what it recorded stays, status says so; a run resumes it
    stopped = qs("stop", "--workspace", ws)
    assert stopped.returncode == 0 and f"{target}  boxed: stopped (exit 143)" in stopped.stdout, stopped.stdout
    assert f"{target}  boxed: stopped" in qs("status", "--workspace", ws).stdout
    assert tools_running_on(rundir) == [] and "--- quantsweep run stopped" in (rundir / "run.log").read_text()
    resumed = qs("run", recipe, "--workspace", ws, "--host", target, *flags, "--detach")
    assert resumed.returncode == 0 and "started boxed" in resumed.stderr

    follow = qs("logs", "--workspace", ws, "-f", timeout=600)  # waits for the end
    assert follow.returncode == 0 and "--- quantsweep run ended" in follow.stdout
    final = qs("status", "--workspace", ws).stdout
    assert "exit 0" in final  # and the counts from the status file the run wrote on the box, all done
    assert re.search(r"boxed: finished \(exit 0 at [^)]*\); (\d+)/\1 jobs done, 0 failed", final), final
    assert (root / "ws" / "status.json").exists() and not (rundir / "ws").exists()

    pulled = qs("pull", "--workspace", ws)
    assert pulled.returncode == 0 and "4 rows pulled, 0 already here; the run is finished" in pulled.stdout
    before = (ws / "store.sqlite").read_bytes()
    assert "0 rows pulled, 4 already here" in qs("pull", "--workspace", ws).stdout
    assert (ws / "store.sqlite").read_bytes() == before  # pulling again changed nothing

    local = tmp_path / "local"
    assert qs("run", recipe, "--workspace", local, "-q").returncode == 0
    ours, theirs = _rows(local, "boxed"), _rows(ws, "boxed")
    assert ours == theirs  # the same numbers, to every digit llama.cpp printed
    assert all(x["pulled_from"] == target for x in Store(ws / "store.sqlite").results("boxed")
               .extra_json.map(__import__("json").loads))
    rep = qs("report", "boxed", "--workspace", ws, "--out", tmp_path / "rep")
    assert rep.returncode == 0 and "| Q2_K |" in (tmp_path / "rep" / "README.md").read_text()

    # one workspace per box root, as locally: another recipe reuses the reference, its logits and the models
    more = small_recipe(tmp_path, demo_model, name="boxed2", weights=("Q8_0",), bench=False, chunks=3,
                        pairs=(("f16", "f16"), ("q8_0", "q8_0")))
    assert qs("run", more, "--workspace", ws, "--host", target, *flags, timeout=600).returncode == 0
    assert "boxed2: 2 cells; 1 jobs run, 4 cached" in (root / "runs" / "boxed2" / "run.log").read_text()


def _rows(ws: Path, name: str) -> list[tuple]:
    df = Store(ws / "store.sqlite").results(name)
    cols = ["cell_id", "weights", "type_k", "type_v", "status", "kld_mean", "kld_mean_err", "ppl_q", "ppl_base",
            "same_top", "kld_p99", "file_bytes"]
    return sorted(map(tuple, df[cols].astype(str).values.tolist()))


def test_failures_speak_plainly_and_start_nothing(box, sshd, tmp_path, demo_model):
    target, flags, root = box
    _, opts, keys, port = sshd
    recipe = small_recipe(tmp_path, demo_model, name="nope", weights=("Q8_0",), bench=False, pairs=(("f16", "f16"),))
    ws = tmp_path / "laptop"

    def one_line(res, *needles):
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert all(n in lines[0] for n in needles), lines[0]

    closed = _free_port()
    one_line(qs("run", recipe, "-w", ws, "--host", target, *flags,
                env_extra={"QUANTSWEEP_SSH_ARGS": opts.replace(f"-p {port}", f"-p {closed}")}),
             f"quantsweep: error: {target}: host unreachable (", "Connection refused")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    one_line(qs("run", recipe, "-w", ws, "--host", target, *flags,
                env_extra={"QUANTSWEEP_SSH_ARGS": opts.replace(f"-i {keys}/id", f"-i {tmp_path}/other")}),
             f"{target}: authentication refused (", "Permission denied")
    no_cpu = [f for f in flags if f != "--cpu"]
    one_line(qs("run", recipe, "-w", ws, "--host", target, *no_cpu), "no GPU found on the box", "--cpu")
    # a disk too small for the base logits a recipe wants as a file: 40 MB of text at ctx 8192, ~480 GiB of them
    corpus = tmp_path / "big.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 900_000)
    huge = small_recipe(tmp_path, demo_model, name="huge", weights=("Q8_0",), bench=False, pairs=(("f16", "f16"),),
                        ctx=8192, chunks=None, corpus=f"{{path: {corpus}}}")
    huge.write_text(huge.read_text().replace("chunks: None, ", "logits: file, "))
    # every part counts: the venv not installed yet, the models (the F16 reference first), the logits
    one_line(qs("run", huge, "-w", ws, "--host", target, *flags), "GiB of quantsweep's venv + ", "GiB of models + ",
             "GiB of reference logits", "GiB free in")
    assert not (root / "runs").exists() and not (root / "qs").exists()  # nothing installed, nothing started
    assert not (ws / "hosts.json").exists()


def test_a_box_command_s_lines_reach_this_terminal_as_they_come_not_when_it_ends(sshd, monkeypatch, tmp_path):
    """How a toolchain build on the box shows its progress: each stderr line, named with the box, while
    the command still runs (the box waits for its first line to arrive here before it writes the next)."""
    import io

    from orchestrator.execute.remote import Box

    target, opts, _, _ = sshd
    monkeypatch.setenv("QUANTSWEEP_SSH_ARGS", opts)
    arrived = tmp_path / "arrived"

    class Terminal(io.StringIO):
        def write(self, s):
            if "building: 10 %" in s:
                arrived.touch()
            return super().write(s)

    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    script = (f"echo '  building: 10 %' >&2; i=0; while [ ! -e {arrived} ] && [ $i -lt 100 ]; do sleep 0.1; "
              f"i=$((i+1)); done; [ -e {arrived} ] && echo '  building: 20 %' >&2 || echo 'only at the end' >&2; "
              "exit 3")
    res = Box(target, str(tmp_path)).ssh(["sh", "-c", script], capture=False, prefix="quantsweep: box: ")
    assert term.getvalue() == "quantsweep: box:   building: 10 %\nquantsweep: box:   building: 20 %\n"
    assert res.returncode == 3 and res.stderr.endswith("  building: 20 %\n")  # its last lines, for an error
