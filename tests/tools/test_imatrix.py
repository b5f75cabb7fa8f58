import pytest

from orchestrator.errors import ToolFailed
from orchestrator.tools import imatrix as ti


def test_too_short_calibration_text(fixture_text, tmp_path):
    with pytest.raises(ToolFailed, match="too short"):
        ti.judge(int(fixture_text("imatrix_too_short.rc")), "", fixture_text("imatrix_too_short.stderr"),
                 tmp_path / "none.gguf")
