"""`make chaos`: faults injected into real sweeps (the real llama.cpp tools on the demo model), one line
per fault class with its counts. Not part of `make test` (several minutes); fast representatives of
each class are (tests/test_faults.py, tests/integration/test_sweep.py).

- kill -9: a concurrent sweep (--parallel 2) killed at 20 random moments, each followed by a resume;
  the final store must equal an uninterrupted run's (same cells, same KLD/PPL to the printed digits,
  same failure rows), no tool may outlive a kill, and every model artifact must be byte-identical to
  the uninterrupted run's (a partial file is never used).
- disk: the sweep under a file-size limit (ulimit -f) that stops the reference model, the base logits
  or a store write; each ends as a failure row (or one line) naming the disk, no partial artifact is
  kept, and the store stays readable with what was recorded before.
- corrupt: a truncated GGUF, a file that is not one, an imatrix of another model, base logits
  truncated / of another vocabulary / with a foreign header, and a store that is not SQLite, another
  program's or a newer quantsweep's: each refused before a tool runs, one line naming it, exit 2.
- tampered: models and reference logits we made, damaged after they were made (bits flipped at the same
  size, 64 KiB overwritten, truncated), then read by new cells: each is made again byte-identical first,
  and no wrong number is stored.
- full_disk: the workspace on a real 60 MiB tmpfs (root only): every failure names the disk, nothing partial
  is kept, and once the disk is larger a plain `run` ends with the clean run's numbers.
- moved: a copied workspace (a model deleted in the copy) and a moved one: each works as it is, the copy
  never reads the original's files, the moved one runs only its new cells.
- network: the demo model served by a stand-in Hugging Face Hub on 127.0.0.1 (tests/hf_standin.py)
  that answers 500, 503, 429 with Retry-After, drops connections, stalls, cuts bodies short and
  damages one byte; the real huggingface_hub client and our retry policy must bring the model whole
  (the sweep's numbers equal a run on the local file), the HF cache must hold no damaged file, and a
  Hub that never recovers must end in one line with nothing run.
"""

from __future__ import annotations

import hashlib
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path


from tests.helpers import small_recipe
from bench import scratch
from tests.helpers import tools_running_on

from orchestrator.inputs import hub
from orchestrator.recipe import model as recipe
from orchestrator.results.store import Store

REPO = Path(__file__).parents[1]
QS = [sys.executable, "-m", "orchestrator.cli"]
KEEP = ["cell_id", "status", "kld_mean", "kld_mean_err", "ppl_q", "ppl_base", "same_top", "kld_p99", "reason"]


def _recipe(tmp: Path, model: Path) -> Path:
    broken = "{type: Q4_K_M, name: broken, tensor_types: {ffn_down: iq2_xxs}}"  # a recorded failure row
    return small_recipe(tmp, model, name="chaos", weights=("Q8_0", "Q2_K", broken), bench=True, chunks=3,
                        pairs=(("f16", "f16"), ("q8_0", "q4_0")))


def _run(path: Path, ws: Path, *extra: str, preexec=None, **kw) -> subprocess.Popen:
    return subprocess.Popen([*QS, "run", str(path), "--workspace", str(ws), "-q", *extra], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec, **kw)


def _quality(ws: Path):
    df = Store(ws / "store.sqlite").results()
    df = df[df.measurement != "bench"] if "measurement" in df else df
    cols = [c for c in KEEP if c in df.columns]
    return df[cols].sort_values("cell_id").reset_index(drop=True)


def _artifacts(ws: Path) -> dict[str, str]:
    out = {}
    for p in sorted((ws / "artifacts").rglob("*.gguf")):
        out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def kill9(model: Path, tmp: Path, kills: int = 20, seed: int = 1) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    path = _recipe(tmp, model)
    ref_ws, ws = tmp / "uninterrupted", tmp / "killed"
    t0 = time.monotonic()
    assert _run(path, ref_ws, "--parallel", "2").wait() == 1  # 1: the broken cell failed, as it should
    full = time.monotonic() - t0
    t1 = time.monotonic()
    rng = random.Random(seed)
    injected = orphans = 0
    while injected < kills:
        proc = _run(path, ws, "--parallel", "2")
        time.sleep(rng.uniform(0.2, min(6.0, full / 4)))
        if proc.poll() is not None:
            break  # the sweep finished before this kill: the remaining kills have nothing to hit
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        injected += 1
        time.sleep(0.3)  # PR_SET_PDEATHSIG delivers the tools' SIGKILL; give the kernel a moment
        orphans += len(tools_running_on(ws))
    rc = _run(path, ws, "--parallel", "2").wait()
    a, b = _quality(ref_ws), _quality(ws)
    lost = len(a) - len(b) + int(not a.equals(b))
    corrupt = sum(1 for k, v in _artifacts(ws).items() if _artifacts(ref_ws).get(k) != v)
    partials = len(list((ws / "artifacts").rglob("*.partial")))
    ok = rc == 1 and lost == 0 and corrupt == 0 and orphans == 0 and partials == 0
    return (f"kill -9     {injected:>3} injections: {lost} results lost, {corrupt} corrupt artifacts used, "
            f"{orphans} orphaned tools, {partials} partial files left; final store "
            f"{'equals' if a.equals(b) else 'DIFFERS FROM'} the uninterrupted run's ({len(b)} cells; "
            f"{full:.0f} s uninterrupted, {time.monotonic() - t1:.0f} s with the kills)  {'OK' if ok else 'FAIL'}")


def _limit(nbytes: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return apply


def disk(model: Path, tmp: Path) -> str:
    tmp.mkdir(parents=True, exist_ok=True)
    path = small_recipe(tmp, model, name="disk", weights=("Q8_0",), bench=False, chunks=3, pairs=(("f16", "f16"),))
    cases, ok = 0, 0
    detail = []
    # 1. the reference model (F16, ~270 MB) outgrows a 64 MiB limit: a failure row naming the disk
    ws = tmp / "disk-ref"
    proc = _run(path, ws, preexec=_limit(64 * 2**20))
    proc.wait()
    job = Store(ws / "store.sqlite").db.execute("SELECT reason FROM jobs WHERE kind='reference'").fetchone()
    good = job is not None and job[0].startswith("disk:") and not list((ws / "artifacts").rglob("*.partial")) \
        and not list((ws / "artifacts").rglob("*.gguf"))
    cases, ok = cases + 1, ok + good
    detail.append(f"reference:   {job[0] if job else 'no row'}")
    # 2. the base logits (ctx 1024 x 6 chunks: 301 MB) outgrow a limit every model fits under (F16: 270 MB)
    big = small_recipe(tmp, model, name="disk2", weights=("Q8_0",), bench=False, ctx=1024, chunks=6,
                       pairs=(("f16", "f16"),))
    ws = tmp / "disk-logits"
    _run(big, ws, preexec=_limit(280 * 2**20)).wait()
    row = Store(ws / "store.sqlite").db.execute("SELECT status, reason FROM jobs WHERE kind='base'").fetchone()
    made = Store(ws / "store.sqlite").db.execute("SELECT count(*) FROM jobs WHERE kind IN ('reference', "
                                                 "'quantize') AND status='done'").fetchone()[0]
    good = (row is not None and row[0] == "failed" and row[1].startswith("disk:") and made == 2
            and not list((ws / "artifacts").rglob("*.partial")) and not list((ws / "artifacts").rglob("*.kld")))
    cases, ok = cases + 1, ok + good
    detail.append(f"base logits: {row[1] if row else 'no row'}")
    # 3. a store write: the limit is below the store's size; the next write fails, the store stays readable
    ws = tmp / "disk-store"
    proc = _run(path, ws)
    proc.wait()
    store = Store(ws / "store.sqlite")
    before = store.db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    store.db.execute("DELETE FROM jobs WHERE kind='kld'")
    store.db.close()
    # 8 KiB: the KLD's logs fit, the store's next write (its -wal, -shm, a checkpoint) does not
    proc = _run(path, ws, preexec=_limit(8192))
    _, err = proc.communicate()
    after = Store(ws / "store.sqlite").db.execute("PRAGMA integrity_check").fetchone()[0]
    line = err.decode().strip().splitlines()[-1] if err else ""
    good = (proc.returncode == 3 and "store could not be written" in line and "(disk full or file-size limit)" in line
            and after == "ok")
    cases, ok = cases + 1, ok + good
    detail.append(f"store:       {line} ({before} jobs recorded before)")
    return (f"disk full   {cases:>3} injections (reference model, base logits, store write): {ok} named the disk "
            f"with nothing partial kept and the store intact, {cases - ok} not  {'OK' if ok == cases else 'FAIL'}\n"
            + "\n".join(f"            {d}" for d in detail))


def corrupt(model: Path, tmp: Path) -> str:
    """Bad inputs: each must be refused before a tool runs on it, in one line naming the file, exit 2,
    with the file byte-identical afterwards and nothing run; a file of ours cut short is made again."""
    import shutil
    import sqlite3

    tmp.mkdir(parents=True, exist_ok=True)
    results = []

    def check(what: str, recipe_path: Path, ws: Path, victim: Path) -> None:
        before = victim.read_bytes()
        jobs = _jobs(ws)
        proc = _run(recipe_path, ws)
        _, err = proc.communicate()
        lines = err.decode().strip().splitlines()
        good = (proc.returncode == 2 and len(lines) == 1 and str(victim) in lines[0]
                and victim.read_bytes() == before and _jobs(ws) == jobs)
        results.append((what, good, lines[-1] if lines else f"rc {proc.returncode}, nothing said"))

    def models(name: str, data: bytes) -> Path:
        (tmp / name).write_bytes(data)
        return small_recipe(tmp, tmp / name, name=name.split(".")[0], weights=("Q8_0",), bench=False,
                            pairs=(("f16", "f16"),), chunks=2)

    head = model.read_bytes()[: 2**20]
    check("truncated GGUF", models("truncated.gguf", head), tmp / "ws-a", tmp / "truncated.gguf")
    check("not a GGUF", models("text.gguf", b"name: a recipe\n" * 10), tmp / "ws-b", tmp / "text.gguf")
    im = tmp / "foreign.imatrix"
    im.write_bytes(b"\x01\0\0\0" + len(b"blk.0.ffn_gate_exps.weight").to_bytes(4, "little")
                   + b"blk.0.ffn_gate_exps.weight" + (1).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"\0" * 16)
    rec = small_recipe(tmp, model, name="imat", weights=("{type: Q4_K_M, imatrix: {file: foreign.imatrix}}",),
                       bench=False, pairs=(("f16", "f16"),), chunks=2)
    check("imatrix of another model", rec, tmp / "ws-c", im)
    # base logits kept from a run, then damaged; a new cell would read them. A file of ours cut short is made
    # again (said in one line); one that is not ours (another vocabulary, a foreign header) is refused
    ws = tmp / "ws-logits"
    (tmp / "first").mkdir(exist_ok=True)
    first = small_recipe(tmp / "first", model, name="logits", weights=("Q8_0",), bench=False,
                         pairs=(("f16", "f16"),), chunks=2)
    _run(first, ws).wait()
    rec = small_recipe(tmp, model, name="logits", weights=("Q8_0",), bench=False,
                       pairs=(("f16", "f16"), ("q8_0", "q8_0")), chunks=2)
    (logits,) = (ws / "artifacts" / "logits").glob("*.kld")
    good_bytes = logits.read_bytes()
    for i, (what, damage) in enumerate((
            ("base logits truncated", lambda b: b[: len(b) // 3]),
            ("base logits of another vocabulary", lambda b: b[:12] + (32000).to_bytes(4, "little") + b[16:]),
            ("base logits with a foreign header", lambda b: b"GGUF" + b[4:]))):
        case = tmp / f"ws-logits-{i}"
        shutil.copytree(ws, case)
        victim = case / "artifacts" / "logits" / logits.name
        victim.write_bytes(damage(good_bytes))
        if what.endswith("truncated"):
            proc = _run(rec, case)
            _, err = proc.communicate()
            lines = err.decode().strip().splitlines()
            good = (proc.returncode == 0 and len(lines) == 1 and "made again" in lines[0]
                    and victim.read_bytes() == good_bytes)
            results.append((what, good, lines[-1] if lines else f"rc {proc.returncode}, nothing said"))
        else:
            check(what, rec, case, victim)
    # the store: not SQLite, another program's database, a newer quantsweep's
    for what, make in (("store that is not SQLite", lambda f: f.write_bytes(b"not a database\n" * 100)),
                       ("store of another program", lambda f: sqlite3.connect(f).execute("CREATE TABLE t (x)")),
                       ("store of a newer quantsweep", lambda f: sqlite3.connect(f).executescript(
                           "CREATE TABLE jobs (key TEXT); PRAGMA user_version = 99;"))):
        ws = tmp / f"ws-store-{len(results)}"
        ws.mkdir()
        make(ws / "store.sqlite")
        check(what, rec, ws, ws / "store.sqlite")
    shutil.rmtree(tmp / "ws-logits", ignore_errors=True)
    ok = sum(g for _, g, _ in results)
    return (f"corrupt    {len(results):>3} injections (model, imatrix, base logits, store): {ok} as they must be "
            f"(refused before any tool ran, one line naming the file, exit 2, file untouched; our own logits cut "
            f"short: made again, said in one line); {len(results) - ok} not  "
            f"{'OK' if ok == len(results) else 'FAIL'}\n"
            + "\n".join(f"            {'ok  ' if g else 'FAIL'} {w}: {line[:150]}" for w, g, line in results))


def network(model: Path, tmp: Path) -> str:
    from tests.hf_standin import Fault, HubStandIn, Repo

    tmp.mkdir(parents=True, exist_ok=True)
    name = "SmolLM2-135M-Instruct-Q4_1.gguf"
    local = small_recipe(tmp, model, name="net", weights=("Q8_0",), bench=False, pairs=(("f16", "f16"),), chunks=2)
    remote = tmp / "net-hf.yaml"
    remote.write_text(local.read_text().replace(f"{{path: {model}}}",
                                                f"{{hf: {{repo: chaos/demo-GGUF, file: {name}}}}}"))
    faults = [Fault("500", "/revision/"), Fault("429", "/revision/"), Fault("503", "/tree/"),
              Fault("500", "/resolve/", "HEAD"), Fault("503", name), Fault("drop", name), Fault("cut", name),
              Fault("stall", name), Fault("cut", name), Fault("corrupt", name), Fault("cut", name)]
    env = {**os.environ, "HF_HUB_CACHE": str(tmp / "hf"), "HF_HUB_DOWNLOAD_TIMEOUT": "2"}
    env.pop("HF_TOKEN", None)
    with HubStandIn([Repo("chaos/demo-GGUF", {name: model.read_bytes()}), Repo("chaos/down-GGUF", {})],
                    stall_s=5) as hub:
        env["HF_ENDPOINT"] = hub.url
        hub.inject(*faults)
        proc = _run(remote, tmp / "ws-hf", env=env)
        _, err = proc.communicate()
        met = len(faults) - len(hub.faults)
        blobs = [p for p in (tmp / "hf").rglob("blobs/*") if p.is_file()]
        sound = all(hashlib.sha256(b.read_bytes()).hexdigest() == b.name for b in blobs) and len(blobs) == 1
        # a Hub that never recovers: one line, exit 3 (the environment), nothing run
        down = tmp / "net-down.yaml"
        down.write_text(remote.read_text().replace("chaos/demo-GGUF", "chaos/down-GGUF")
                        .replace("name: net", "name: down"))
        hub.inject(*[Fault("503", "/revision/")] * 10)
        gone = _run(down, tmp / "ws-down", env=env)
        _, gone_err = gone.communicate()
    _run(local, tmp / "ws-local").wait()
    same = proc.returncode == 0 and _quality(tmp / "ws-hf").drop(columns="cell_id").equals(
        _quality(tmp / "ws-local").drop(columns="cell_id"))
    last = gone_err.decode().strip().splitlines()
    refused = (gone.returncode == 3 and len(last) >= 1 and "failed 5 times, last: HTTP 503" in last[-1]
               and _jobs(tmp / "ws-down") in (None, (0, None)))
    ok = met == len(faults) and sound and same and refused
    retries = [ln for ln in err.decode().splitlines() if ln.startswith("quantsweep:") and " try " in ln]
    return (f"network    {len(faults) + 1:>3} injections ({met} faults met while the model downloaded, then a Hub "
            f"that never recovers): 0 results lost, 0 corrupt files used or kept, numbers equal the local file's: "
            f"{same}; the dead Hub: one line, exit {gone.returncode}, nothing run  {'OK' if ok else 'FAIL'}\n"
            f"            our tries: {len(retries)}; HF cache: {len(blobs)} blob, sha256 sound: {sound}\n"
            f"            dead Hub: {last[-1][:150] if last else 'nothing said'}")


def _cells(ws: Path) -> dict:
    df = Store(ws / "store.sqlite").results()
    df = df[df.measurement == "kld"]
    return {(r.weights, r.type_k, r.type_v): (r.status, r.kld_mean, r.kld_mean_err, r.same_top)
            for r in df.itertuples()}


def _wrong(cells: dict, truth: dict) -> int:
    """Cells stored `ok` whose numbers are not the clean run's, or not finite."""
    import math

    return sum(1 for k, v in cells.items() if v[0] == "ok" and (k in truth and v != truth[k] or not all(
        isinstance(x, float) and math.isfinite(x) for x in v[1:])))


def _two_runs(model: Path, tmp: Path, name: str):
    """A clean 2-weights × 3-pairs run in its own workspace, and a recipe path that adds nothing."""
    path = small_recipe(tmp, model, name=name, weights=("Q8_0", "Q4_K_M"), bench=False, chunks=2,
                        pairs=(("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0")))
    truth_ws = tmp / "truth"
    assert _run(path, truth_ws).wait() == 0
    return path, truth_ws, _cells(truth_ws)


def _first(tmp: Path, model: Path, name: str, pairs) -> Path:
    """The same recipe with fewer pairs, in a folder of its own (one name: one recipe in the store), so
    that running the full one afterwards adds cells that read what the first run made."""
    (tmp / "first").mkdir(exist_ok=True)
    return small_recipe(tmp / "first", model, name=name, weights=("Q8_0", "Q4_K_M"), bench=False, chunks=2,
                        pairs=pairs)


def tampered(model: Path, tmp: Path) -> str:
    """Artifacts we made, damaged after they were made (same size, bits flipped; overwritten; truncated),
    then a new cell reads them: each is made again (or the run refuses), never measured."""
    tmp.mkdir(parents=True, exist_ok=True)
    path, truth_ws, truth = _two_runs(model, tmp, "tamper")
    first = _first(tmp, model, "tamper", (("f16", "f16"),))

    def flip(p: Path):
        with open(p, "r+b") as f:
            f.seek(p.stat().st_size // 2)
            f.write(bytes(b ^ 0x40 for b in f.read(200)))

    def overwrite(p: Path):
        with open(p, "r+b") as f:
            f.seek(p.stat().st_size // 2)
            f.write(b"\xff" * 65536)

    def truncate(p: Path):
        os.truncate(p, p.stat().st_size // 2)

    cases = wrong = remade = 0
    for how in (flip, overwrite, truncate):
        for pattern in ("models/Q8_0-*.gguf", "models/Q4_K_M-*.gguf", "logits/*.kld"):  # what the new cells read
            ws = tmp / f"{how.__name__}-{pattern.split('/')[1][:4]}"
            assert _run(first, ws).wait() == 0
            (victim,) = (ws / "artifacts").glob(pattern)
            before = hashlib.sha256(victim.read_bytes()).hexdigest()
            how(victim)
            rc = _run(path, ws).wait()
            cases += 1
            if rc == 0:
                remade += hashlib.sha256(victim.read_bytes()).hexdigest() == before
                wrong += _wrong(_cells(ws), truth)
            else:  # refused, naming the file (a logits file whose header is not ours)
                wrong += _wrong(_cells(ws), truth)
    ok = wrong == 0 and remade == cases
    return (f"tampered    {cases:>3} damaged artifacts (bits flipped, 64 KiB overwritten, truncated; models and "
            f"logits): {remade} made again byte-identical, {wrong} wrong numbers stored  {'OK' if ok else 'FAIL'}")


def full_disk(model: Path, tmp: Path) -> str:
    """The workspace on a real 60 MiB tmpfs (root), filled during the run: the failure names the disk, and
    after the disk grows a plain `run` completes with the clean numbers."""
    import subprocess

    tmp.mkdir(parents=True, exist_ok=True)
    path, truth_ws, truth = _two_runs(model, tmp, "full")
    disk = tmp / "disk"
    disk.mkdir(exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(disk)],
                      capture_output=True).returncode:
        return "full disk     0 cases: cannot mount a tmpfs here (not root); `disk` covers ulimit -f  OK"
    try:
        ws = disk / "ws"
        code = ("import sys; from orchestrator import cli; from orchestrator.execute import local; "
                "local.check_disk = lambda co, todo: None; sys.exit(cli.main(sys.argv[1:]))")
        rc = subprocess.run([sys.executable, "-c", code, "run", str(path), "--workspace", str(ws), "-q"], cwd=REPO,
                            capture_output=True).returncode
        reasons = [r for (r,) in Store(ws / "store.sqlite").db.execute("SELECT reason FROM jobs WHERE status='failed'")]
        named = sum(r.startswith(f"disk full: {disk} (tmpfs") for r in reasons)
        partial = len(list((ws / "artifacts").rglob("*.partial")))
        subprocess.run(["mount", "-o", "remount,size=2g", str(disk)], check=True)
        rc2 = _run(path, ws).wait()
        wrong = _wrong(_cells(ws), truth)
        same = _cells(ws) == truth
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
    ok = rc == 1 and reasons and named == len(reasons) and partial == 0 and rc2 == 0 and same and wrong == 0
    return (f"full disk   {len(reasons):>3} failures on a 60 MiB tmpfs: {named} named the disk, {partial} partial "
            f"files; after it grew a plain run {'completed' if rc2 == 0 else 'FAILED'} with "
            f"{'the clean numbers' if same else 'OTHER numbers'}; {wrong} wrong numbers stored  "
            f"{'OK' if ok else 'FAIL'}")


def moved(model: Path, tmp: Path) -> str:
    """A workspace copied (a model deleted in the copy) and one moved, each given a new pair: the copy
    makes its own model and never reads the original's; the moved one runs only the new cells."""
    tmp.mkdir(parents=True, exist_ok=True)
    path, truth_ws, truth = _two_runs(model, tmp, "moved")
    first = _first(tmp, model, "moved", (("f16", "f16"), ("q8_0", "q8_0")))
    ws = tmp / "ws"
    assert _run(first, ws).wait() == 0
    import shutil

    copy = tmp / "ws-copy"
    shutil.copytree(ws, copy)
    (victim,) = (copy / "artifacts" / "models").glob("Q8_0-*.gguf")
    victim.unlink()
    rc_copy = _run(path, copy).wait()
    gone = tmp / "ws-moved"
    ws.rename(gone)
    jobs = _jobs(gone)[0]
    rc_moved = _run(path, gone).wait()
    ran = _jobs(gone)[0] - jobs
    wrong = _wrong(_cells(copy), truth) + _wrong(_cells(gone), truth)
    ok = rc_copy == 0 and rc_moved == 0 and ran == 2 and victim.exists() and wrong == 0
    return (f"moved       2 workspaces (a copy missing a model, a moved one): copy exit {rc_copy}, its model made "
            f"{'again there' if victim.exists() else 'NOWHERE'}; moved exit {rc_moved}, {ran} jobs run for 2 new "
            f"cells; {wrong} wrong numbers stored  {'OK' if ok else 'FAIL'}")


def _jobs(ws: Path):
    """The jobs a workspace has recorded, or None when it has no store we can read."""
    try:
        return Store.read_only(ws / "store.sqlite").db.execute("SELECT count(*), max(finished_at) FROM jobs").fetchone()
    except Exception:
        return None


def main() -> int:
    model = hub.fetch_model(recipe.load(REPO / "recipes" / "demo.yaml").model, REPO)
    tmp = scratch.folder("qs-chaos-")
    classes = {"kill9": kill9, "disk": disk, "corrupt": corrupt, "network": network, "tampered": tampered,
               "full_disk": full_disk, "moved": moved}
    chosen = sys.argv[1:] or list(classes)
    lines = [classes[c](model, tmp / c) for c in chosen]
    print("\n".join(lines))
    return 0 if all(ln.split("\n")[0].endswith("OK") for ln in lines) else 1


if __name__ == "__main__":
    os.environ.setdefault("QUANTSWEEP_PLAIN", "1")
    sys.exit(main())
