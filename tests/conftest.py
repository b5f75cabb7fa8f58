import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .helpers import BUILD, FIXTURES, ray_token  # noqa: F401  (tests/helpers.py holds what tests share)

# Ray reads its authentication settings when it is imported, so before any test module imports it: every
# cluster a test starts uses token authentication with a token file of the suite's own, never ~/.ray's
_RAY_DIR = tempfile.mkdtemp(prefix="qs-ray-token-")
os.environ.update(ray_token(Path(_RAY_DIR)))
atexit.register(shutil.rmtree, _RAY_DIR, ignore_errors=True)


def _link_tree(src: Path, dest: Path) -> None:
    """The files under src, linked one by one under dest: what is there is reused, what a test adds
    lands in dest only."""
    for path in src.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            target = dest / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(path)


@pytest.fixture(scope="session", autouse=True)
def _own_caches(tmp_path_factory):
    """No test touches the user's caches: quantsweep's and Hugging Face's point into a temporary
    directory. The built tools and the models already extracted there are reused (the tools named by
    QUANTSWEEP_LLAMA_CPP and QUANTSWEEP_IK_LLAMA_CPP, the model files and downloaded wheels linked file by
    file), so nothing is built or fetched twice."""
    from orchestrator.tools import toolchain

    real = toolchain.cache_root()
    mp = pytest.MonkeyPatch()
    for env, flavor in (("QUANTSWEEP_LLAMA_CPP", "mainline"), ("QUANTSWEEP_IK_LLAMA_CPP", "ik")):
        if not os.environ.get(env):
            try:
                mp.setenv(env, str(toolchain.find(flavor=flavor).bin_dir))
            except Exception:  # no tools built: the tests that need them say so
                pass
    cache = tmp_path_factory.mktemp("caches")
    for sub in ("models", "downloads/pypi"):
        if (real / sub).is_dir():
            _link_tree(real / sub, cache / "quantsweep" / sub)
    mp.setenv("QUANTSWEEP_CACHE", str(cache / "quantsweep"))
    mp.setenv("HF_HOME", str(cache / "huggingface"))
    mp.setenv("HF_HUB_CACHE", str(cache / "huggingface" / "hub"))
    for k in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        mp.delenv(k, raising=False)
    yield cache
    mp.undo()


@pytest.fixture(autouse=True)
def _own_workspace(tmp_path, monkeypatch):
    """Every test gets its own workspace; nothing leaks into the repository or between tests."""
    monkeypatch.setenv("QUANTSWEEP_WORKSPACE", str(tmp_path / "ws"))
    for k in list(os.environ):
        if k.startswith("LLAMA_ARG_"):
            monkeypatch.delenv(k)
    yield


@pytest.fixture
def fixture_text():
    def read(name: str) -> str:
        return (FIXTURES / BUILD / name).read_text(encoding="utf-8")
    return read
