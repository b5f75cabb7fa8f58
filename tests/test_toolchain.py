"""Toolchain choices that need no build: CUDA flash-attention pairs and the warning when one is missing."""

from pathlib import Path

import pytest

from orchestrator.tools import toolchain
from orchestrator.errors import ToolchainError


def tc(backends, fa):
    return toolchain.Toolchain(bin_dir=Path("/x"), commit="0c1e570", version="", compiler="", target="",
                               backends=backends, cuda_fa_quants=fa)


def test_fa_quants_are_checked_sorted_and_keep_f16():
    assert toolchain.normalize_fa_quants("q8_0-q4_0; Q8_0-q8_0") == "f16-f16,q8_0-q4_0,q8_0-q8_0"
    assert toolchain.normalize_fa_quants("all") == "all"
    with pytest.raises(ToolchainError, match="'q8-q8' is not a K-V pair"):
        toolchain.normalize_fa_quants("q8-q8")
    assert "-DGGML_CUDA_FA_QUANTS=f16-f16,q4_0-q4_0" in toolchain.build_flags(True, "f16-f16,q4_0-q4_0")
    assert not any("CUDA" in f for f in toolchain.build_flags(False))


def test_a_rocm_build_asks_for_hip_and_an_image_for_the_cards_rented_boxes_have():
    flags = toolchain.build_flags(False, rocm=True)
    assert "-DGGML_HIP=ON" in flags and not any("CUDA" in f or "AMDGPU" in f for f in flags)
    portable = toolchain.build_flags(False, portable=True, rocm=True)
    assert "-DAMDGPU_TARGETS=gfx90a;gfx942;gfx1100" in portable and "-DGGML_NATIVE=OFF" in portable
    assert toolchain.build_key(flags) != toolchain.build_key(toolchain.build_flags(False))
    with pytest.raises(toolchain.ToolchainError, match="one GPU backend"):
        toolchain.build(cuda=True, rocm=True)


def test_warning_names_the_pairs_a_cuda_build_lacks():
    pairs = [("f16", "f16"), ("q8_0", "q4_0"), ("q5_0", "q5_0")]
    w = toolchain.fa_warning(tc(("CUDA",), "f16-f16,q8_0-q4_0"), pairs)
    assert "K/V q5_0/q5_0;" in w and "q8_0/q4_0" not in w and "--fa-quants all" in w
    assert toolchain.fa_warning(tc(("CUDA",), "all"), pairs) is None
    assert toolchain.fa_warning(tc(("CPU",), None), pairs) is None
    assert toolchain.fa_warning(tc(("CUDA",), None), pairs) is None  # tools we did not build: unknown


def test_a_build_s_progress_is_read_from_its_real_output():
    from orchestrator.tools.toolchain import build_step

    from .helpers import BUILD, FIXTURES

    text = (FIXTURES / BUILD / "cmake_build.stdout").read_bytes()  # make's [ NN%] lines, as recorded
    assert build_step(text) == "100 %"
    half = text[: len(text) // 2]
    assert build_step(half) == f"{int(half.splitlines()[-2][1:4])} %"
    assert build_step(b"[12/345] Building CXX object ggml/src/ggml.c.o\n[13/345] Linking") == "step 13 of 345"
    assert build_step(b"-- Configuring done\n") is None


def test_a_running_build_says_how_far_it_is(tmp_path):
    import time

    from orchestrator.tools.toolchain import build_progress

    out, said = tmp_path / "build.stdout", []
    out.write_bytes(b"[  3%] Building C object a.o\n")
    with build_progress(out, said.append, every_s=0.05):
        time.sleep(0.2)
        out.write_bytes(out.read_bytes() + b"[ 57%] Building CXX object b.o\n")
        time.sleep(0.2)
    assert [s.split(" (")[0] for s in said] == ["  building: 3 %", "  building: 57 %"]  # each step said once


def _cached_build(root: Path, key: str, flavor: str | None) -> Path:
    """A toolchain in the cache as `build` leaves it: its tools and what identifies them."""
    import json

    bin_dir = root / "toolchains" / key / "bin"
    bin_dir.mkdir(parents=True)
    for tool in toolchain.TOOLS:
        (bin_dir / tool).write_text("#!/bin/sh\n")
        (bin_dir / tool).chmod(0o755)
    meta = {"commit": key, "version": "0", "compiler": "cc", "target": "x86_64", "backends": ["CPU"],
            "origin": "built", **({"flavor": flavor} if flavor else {})}
    (bin_dir.parent / "toolchain.json").write_text(json.dumps(meta))
    return bin_dir


def test_each_recipe_gets_the_toolchain_it_names_never_the_latest_build(tmp_path, monkeypatch):
    import os
    import time

    monkeypatch.setenv("QUANTSWEEP_CACHE", str(tmp_path))
    monkeypatch.delenv("QUANTSWEEP_LLAMA_CPP", raising=False)
    monkeypatch.delenv("QUANTSWEEP_IK_LLAMA_CPP", raising=False)
    main = _cached_build(tmp_path, "mainline-build", None)  # a build from before flavors: mainline
    with pytest.raises(ToolchainError, match=r"no ik_llama.cpp tools found: run `quantsweep toolchain build --ik`"):
        toolchain.find(flavor="ik")
    ik = _cached_build(tmp_path, "ik-build", "ik")
    past = time.time() - 60
    os.utime(main.parent / "toolchain.json", (past, past))  # the ik build is the newer one
    assert toolchain.find().bin_dir == main and toolchain.find().flavor == "mainline"
    found = toolchain.find(flavor="ik")
    assert found.bin_dir == ik and found.title == "ik_llama.cpp"
    # a job's key names the toolchain only when it is not mainline: mainline keys are those of earlier stores
    assert "flavor" not in toolchain.find().identity() and found.identity()["flavor"] == "ik"


def test_an_ik_build_builds_the_examples_and_keys_apart_and_mainline_keys_do_not_move():
    main_flags, ik_flags = toolchain.build_flags(False), toolchain.build_flags(False, flavor="ik")
    assert "-DLLAMA_BUILD_EXAMPLES=ON" in ik_flags and "-DLLAMA_BUILD_EXAMPLES=OFF" in main_flags
    assert toolchain.build_key(main_flags) == toolchain.build_key(main_flags, toolchain.SOURCES["mainline"])
    assert toolchain.build_key(ik_flags, toolchain.SOURCES["ik"]) != toolchain.build_key(main_flags)
    assert "-DGGML_CUDA_FA_ALL_QUANTS=ON" in toolchain.build_flags(True, flavor="ik")
    with pytest.raises(ToolchainError, match="no ROCm"):
        toolchain.build(cuda=False, rocm=True, flavor="ik")


def test_the_ik_tree_gets_the_build_info_script_its_sdist_lacks(tmp_path, monkeypatch):
    import io
    import tarfile

    monkeypatch.setenv("QUANTSWEEP_CACHE", str(tmp_path))
    src = toolchain.SOURCES["ik"]
    (tmp_path / "downloads").mkdir()
    with tarfile.open(tmp_path / "downloads" / f"{src.archive}.tar.gz", "w:gz") as tar:
        for name, text in (("CMakeLists.txt", "project(x)\n"), ("common/build-info.cpp.in", "int x;\n")):
            data = text.encode()
            info = tarfile.TarInfo(f"{src.archive}/{src.subdir}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tree = toolchain.fetch_source(log=lambda _: None, src=src)
    script = tree / "common" / "cmake" / "build-info-gen-cpp.cmake"
    assert tree == tmp_path / "src" / "ik-llama-cpp-python-0.1.5" and (tree / "CMakeLists.txt").exists()
    assert "configure_file(${CMAKE_CURRENT_SOURCE_DIR}/common/build-info.cpp.in" in script.read_text()
