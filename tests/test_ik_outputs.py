"""ik_llama.cpp's outputs as its tools really print them (tests/fixtures/ik-0.1.5-cpu-gnu12/, recorded by
`record.py --ik` with the ik-llama-cpp-python 0.1.5 build): every parser and judge of the mainline tools reads
them, its non-zero exit on a successful `--help` included."""

import json

import pytest

from orchestrator.inputs import gguf_info
from orchestrator.tools import bench, perplexity as tp, quantize
from orchestrator.tools.llama_types import IK_GGML_TYPES
from orchestrator.tools.toolchain import IK_MARK_RE

from .helpers import FIXTURES

IK = FIXTURES / "ik-0.1.5-cpu-gnu12"


def _run(name):
    rc, out, err = ((IK / f"{name}.{part}").read_text() for part in ("rc", "stdout", "stderr"))
    return int(rc), out, err


def test_its_final_estimate_names_chunks_and_context_and_is_read():
    rc, out, err = _run("ppl_base")
    assert "Final estimate: PPL over 3 chunks for n_ctx=128 = 12.4491 +/- 2.60687" in out
    assert rc == 0 and tp.parse_final(out + err) == (12.4491, 2.60687)
    assert tp.parse_final("Final estimate: PPL = 12.4491 +/- 2.60687") == (12.4491, 2.60687)  # mainline's


def test_its_kld_statistics_read_like_mainlines():
    rc, out, err = _run("ppl_kld")
    stats = tp.judge_kld(rc, out, err, base_ppl=12.449090, tolerance=1e-5)
    assert stats["kld_mean"] == 0.135572 and stats["kld_mean_err"] == 0.009513 and stats["ppl_q"] == 15.296756
    assert stats["kld_max"] == 0.832181 and stats["same_top"] == 77.778


def test_its_bench_json_and_its_quantize():
    rc, out, err = _run("bench_json")
    rows = bench.judge(rc, out, err, 2)
    assert {r["test"] for r in rows} == {"pp16", "tg4"} and all(r["ts_mean"] > 0 for r in rows)
    assert {(r["bench_type_k"], r["bench_type_v"], r["n_depth"]) for r in rows} == {("q8_0", "q8_0", 0)}


def test_its_quantize_is_judged_from_its_output(tmp_path):
    rc, out, err = _run("quantize_iq4_ks")
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(60))
    stats = quantize.judge(rc, out, err, gguf)
    assert stats["quant_mib"] > 0
    # `--help` exits 1 on success: its text, not its exit code, says which toolchain it is
    rc, out, err = _run("quantize_help")
    assert rc == 1 and IK_MARK_RE.search(out + err) and "IQ4_KS" in quantize.parse_help(out + err)
    assert not IK_MARK_RE.search((FIXTURES / "0c1e570-cpu-gnu12" / "quantize_help.stdout").read_text())


def test_its_weight_types_are_read_from_its_files(tmp_path):
    want = json.loads((IK / "iq4_ks_gguf_info.json").read_text())
    assert want["tensor_types"]["IQ4_KS"] == 27 and "Q6_0" in want["tensor_types"]  # types gguf-py lacks
    assert IK_GGML_TYPES[144] == ("IQ4_KS", 256, 136) and IK_GGML_TYPES[133] == ("Q6_0", 32, 26)
    # a file with a tensor of ik's type is read, and one with a type neither toolchain knows is named
    assert [(t.type_name, t.n_bytes) for t in gguf_info.Gguf(_with_type(tmp_path / "ik.gguf", 144)).tensors] == \
        [("IQ4_KS", 272)]
    with pytest.raises(ValueError, match="tensor blk.0.ffn_down.weight has type 999, unknown to llama.cpp and "
                                         "ik_llama.cpp"):
        gguf_info.Gguf(_with_type(tmp_path / "odd.gguf", 999))


def _with_type(path, type_id: int):
    """A GGUF with one tensor of 2 × 256 values in 272 bytes (two 136-byte blocks, IQ4_KS's size), written as
    Q8_0 by gguf-py and given the ggml type id `type_id` in its tensor info."""
    import gguf
    import numpy as np

    from .doubles import written

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.ffn_down.weight", np.zeros((2, 272), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    written(w)
    data = bytearray(path.read_bytes())
    name = b"blk.0.ffn_down.weight"
    at = data.index(name) + len(name)
    n_dims = int.from_bytes(data[at:at + 4], "little")
    at += 4 + 8 * n_dims
    data[at:at + 4] = type_id.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path
