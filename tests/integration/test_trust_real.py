"""Never a wrong number, with the real tools: a damaged model is made again before a KLD reads it, a renamed
weights label and a copied or moved workspace work as they are, and a real full disk is named and retried
by a plain `run`."""

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.execute import local
from orchestrator.execute.coordinator import Coordinator
from orchestrator.results.store import Store

from ..helpers import small_recipe

pytestmark = pytest.mark.integration


def _kld(ws: Path) -> dict:
    df = Store(ws / "store.sqlite").results()
    df = df[df.measurement == "kld"]
    return {(r.weights, r.type_k): (r.status, r.kld_mean, r.same_top) for r in df.itertuples()}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_damaged_renamed_copied_and_moved(tmp_path, tools, demo_model, capsys, monkeypatch):
    def recipe(weights, pairs):
        return small_recipe(tmp_path, demo_model, name="trust", weights=weights, bench=False, chunks=2,
                            pairs=pairs)

    path = recipe(("Q8_0", "Q4_K_M"), (("f16", "f16"),))
    ws = tmp_path / "ws"
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 0
    clean = _kld(ws)
    models = ws / "artifacts" / "models"
    (q8,) = models.glob("Q8_0-*.gguf")
    (q4,) = models.glob("Q4_K_M-*.gguf")
    made = _sha(q8)
    jobs = Store(ws / "store.sqlite").db.execute("SELECT artifact FROM jobs WHERE kind='quantize'").fetchall()
    assert all(not Path(a).is_absolute() and a.startswith("artifacts/models/") for (a,) in jobs)
    # every artifact's sha256, hashed beside the next tool, is in its record by the end of the run
    made_files = Store(ws / "store.sqlite").db.execute("SELECT artifact, result_json FROM jobs WHERE artifact > ''")
    hashes = [(json.loads(r)["sha256"], _sha(ws / a)) for a, r in made_files]
    assert len(hashes) == 4 and all(a == b for a, b in hashes)  # the reference, 2 quantized models, the logits

    # 1 + 3: bits flipped in the Q8_0 file (same size); its label renamed; a new pair reads it
    with open(q8, "r+b") as f:
        f.seek(q8.stat().st_size // 2)
        f.write(bytes(b ^ 0x40 for b in f.read(200)))
    path = recipe(("{type: Q8_0, name: q8}", "Q4_K_M"), (("f16", "f16"), ("q8_0", "q8_0")))
    capsys.readouterr()
    assert main(["run", str(path), "--workspace", str(ws)]) == 0
    err = capsys.readouterr().err
    assert "quantize q8: " in err and "is not the file that was made (its sha256 differs); made again" in err
    assert _sha(q8) == made  # made again, byte for byte
    after = _kld(ws)
    assert after[("q8", "f16")] == clean[("Q8_0", "f16")] and after[("Q4_K_M", "f16")] == clean[("Q4_K_M", "f16")]
    assert all(s == "ok" and k == k and 0 < k < 0.1 for s, k, _ in after.values())  # every number finite, sane

    # 4: a copy works as it is: the copy's own files are read and made, never the original's
    copy = tmp_path / "ws-copy"
    shutil.copytree(ws, copy, symlinks=True)
    (copy / "artifacts" / "models" / q4.name).unlink()
    q4_before = q4.stat().st_mtime_ns
    path = recipe(("{type: Q8_0, name: q8}", "Q4_K_M"), (("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0")))
    assert main(["run", str(path), "--workspace", str(copy), "-q"]) == 0
    assert (copy / "artifacts" / "models" / q4.name).is_file() and q4.stat().st_mtime_ns == q4_before
    copied = _kld(copy)
    assert len(copied) == 6 and all(s == "ok" for s, _, _ in copied.values())

    # a moved workspace runs only the new cells: no reference, logits or quantization again
    moved = tmp_path / "ws-moved"
    ws.rename(moved)
    ran = {}
    real = Coordinator.run

    def spy(self):
        ran["todo"] = [j.kind for j in self.to_run()]
        return real(self)
    monkeypatch.setattr(Coordinator, "run", spy)
    assert main(["run", str(path), "--workspace", str(moved), "-q"]) == 0
    assert ran["todo"] == ["kld", "kld"]
    assert _kld(moved) == copied


@pytest.fixture
def tmpfs(tmp_path):
    d = tmp_path / "disk"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=60m", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root): `make chaos` uses ulimit -f instead")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_real_full_disk_is_named_and_a_plain_run_resumes(tmp_path, tools, demo_model, tmpfs, capsys,
                                                           monkeypatch):
    """A 60 MiB workspace disk filled by something else during the run (the pre-run check is passed by): the
    F16 reference (~270 MB) fails naming the disk; once the disk is larger, a plain `run` completes."""
    path = small_recipe(tmp_path, demo_model, name="full", weights=("Q8_0",), bench=False, chunks=2,
                        pairs=(("f16", "f16"),))
    ws = tmpfs / "ws"
    monkeypatch.setattr(local, "check_disk", lambda co, todo: None)
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 1
    out = capsys.readouterr().out
    reason = Store(ws / "store.sqlite").db.execute("SELECT reason FROM jobs WHERE kind='reference'").fetchone()[0]
    assert reason.startswith(f"disk full: {tmpfs} (tmpfs, 60 MiB, "), reason
    assert "disk full" in out
    assert not list((ws / "artifacts").rglob("*.partial"))
    subprocess.run(["mount", "-o", "remount,size=1g", str(tmpfs)], check=True)
    assert main(["run", str(path), "--workspace", str(ws), "-q"]) == 0  # no --retry-failed needed
    (cell,) = _kld(ws).values()
    assert cell[0] == "ok" and 0 < cell[1] < 0.1
