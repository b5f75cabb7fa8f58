import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
BUILD = "0c1e570-cpu-gnu12"  # the build that recorded tests/fixtures/<BUILD>/ (see its README)


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
