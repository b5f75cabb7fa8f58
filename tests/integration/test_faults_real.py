"""Fast representatives of `make chaos` with the real tools: a file-size limit (ulimit -f) stops the
reference model's write; the job is a failure row naming the disk and nothing partial is kept."""

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.store import Store

from .conftest import small_recipe

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]


def test_a_file_size_limit_is_a_failure_row_naming_the_disk(tmp_path, tools, demo_model):
    path = small_recipe(tmp_path, demo_model, name="disk", weights=("Q8_0",), bench=False, pairs=(("f16", "f16"),))
    ws = tmp_path / "ws"
    limit = 32 * 2**20  # the F16 reference is ~270 MB

    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--workspace", str(ws), "-q"],
                          cwd=REPO, preexec_fn=apply, capture_output=True, text=True)
    assert proc.returncode == 1
    status, reason = Store(ws / "store.sqlite").db.execute(
        "SELECT status, reason FROM jobs WHERE kind='reference'").fetchone()
    assert status == "failed" and reason.startswith("disk: writing reference-F16-") and "ulimit -f" in reason
    assert "32 MiB" in reason and ".partial" not in reason
    assert not [p for p in (ws / "artifacts").rglob("*") if p.is_file()]  # nothing partial kept
