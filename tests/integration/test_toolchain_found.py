"""Tools of a build of ours copied elsewhere (as the image does) are found with what the build recorded."""

import json
import shutil

import pytest

from orchestrator.tools import toolchain

pytestmark = pytest.mark.integration


def test_a_copied_build_keeps_its_commit_and_flags(tools, tmp_path):
    shutil.copytree(tools.bin_dir, tmp_path / "bin")
    bare = toolchain.find(str(tmp_path / "bin"))
    assert bare.commit == "unknown"  # a vendored tree's binaries cannot know their commit
    (tmp_path / "toolchain.json").write_text(json.dumps(tools.describe(), default=str))
    found = toolchain.find(str(tmp_path / "bin"))
    assert found.commit == tools.commit == toolchain.PINNED_COMMIT
    assert found.build_flags == tools.build_flags and found.bin_dir == tmp_path / "bin"
