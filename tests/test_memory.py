"""The K/V memory model: block sizes, architectures, padding, sliding windows, fitting a budget."""

import pytest

from orchestrator.plan import memory
from orchestrator.errors import UsageError
from orchestrator.tools import perplexity

from .helpers import SMOLLM2

def smollm2():
    return memory.Architecture.from_hparams("llama", SMOLLM2, 49152)


def test_block_sizes_give_the_published_ratios():
    # q8_0 about half of f16, q4_0 a bit over a quarter (Ollama's write-up: "about a third")
    assert memory.bytes_per_value("q8_0") / memory.bytes_per_value("f16") == pytest.approx(0.53125)
    assert memory.bytes_per_value("q4_0") / memory.bytes_per_value("f16") == pytest.approx(0.28125)
    assert memory.row_bytes("q5_1", 192) == 6 * 24
    assert memory.row_bytes("f32", 192) == 768


def test_demo_architecture_bytes_per_token():
    a = smollm2()
    assert a.n_layer == 30 and set(a.k_values) == {192} and not any(a.swa)
    assert a.kv_bytes_per_token("f16", "f16") == 30 * 2 * 192 * 2
    assert a.kv_bytes_per_token("q8_0", "q4_0") == 30 * (6 * 34 + 6 * 18)


def test_matches_the_recorded_llama_cpp_report(fixture_text):
    """llama.cpp's own numbers for ctx 1000 (padded to 1024), K q8_0, V q4_0, on this model."""
    rep = perplexity.parse_kv_report(fixture_text("ppl_kv_probe.stdout"))
    assert len(rep.pop("caches")) == 1
    assert rep == {"total_mib": 9.14, "cells": 1024, "layers": 30, "n_seq": 1, "type_k": "q8_0",
                   "k_mib": 5.98, "type_v": "q4_0", "v_mib": 3.16, "n_ctx": 1024}
    k, v = smollm2().kv_bytes("q8_0", "q4_0", 1000)
    assert k / 2**20 == pytest.approx(rep["k_mib"], abs=0.005)
    assert v / 2**20 == pytest.approx(rep["v_mib"], abs=0.005)


def test_memory_breakdown_record(fixture_text):
    rows = perplexity.parse_memory_breakdown(fixture_text("ppl_kv_probe.stdout"))
    assert rows[0] == {"kind": "host", "name": "Host", "self": 203, "model": 91, "context": 9, "compute": 102}
    assert perplexity.breakdown_total(rows) == 210  # no device: the host and its repacked weights
    assert perplexity.parse_memory_breakdown("no such record") == []


def test_sliding_window_layers_keep_only_the_window():
    hp = {"block_count": 6, "embedding_length": 256, "attention.head_count": 4, "attention.head_count_kv": 2,
          "attention.key_length": 64, "attention.value_length": 64, "attention.sliding_window": 1024}
    a = memory.Architecture.from_hparams("gemma2", hp, 1000)  # default pattern 2: sliding, full, …
    assert a.swa == (True, False, True, False, True, False)
    full, window = a.cells(32768)
    assert (full, window) == (32768, 1536)  # pad256(1024 + 512)
    k, _ = a.kv_bytes("f16", "f16", 32768)
    assert k == 3 * 128 * 2 * 32768 + 3 * 128 * 2 * 1536
    # a short context: the window never exceeds it
    assert a.cells(300) == (512, 512)


def test_explicit_pattern_and_per_layer_heads():
    hp = {"block_count": 4, "embedding_length": 128, "attention.head_count": [4, 4, 4, 4],
          "attention.head_count_kv": [2, 0, 2, 1], "attention.sliding_window": 128,
          "attention.sliding_window_pattern": [True, False, False, True]}
    a = memory.Architecture.from_hparams("newarch", hp, 100)
    assert a.k_values == (64, 0, 64, 32) and a.swa == (True, False, False, True)


def test_unknown_window_pattern_is_an_upper_bound():
    hp = {"block_count": 2, "embedding_length": 64, "attention.head_count": 2, "attention.sliding_window": 64}
    assert memory.Architecture.from_hparams("somearch", hp, 10).swa == (False, False)


@pytest.mark.parametrize("hp, what", [
    ({"block_count": 2, "embedding_length": 64, "attention.head_count": 2, "attention.kv_lora_rank": 16}, "latent"),
    ({"block_count": 2, "embedding_length": 64, "attention.head_count": 2, "ssm.state_size": 16}, "recurrent"),
    ({"block_count": 2, "embedding_length": 64}, "head_count"),
])
def test_architectures_not_modelled_say_so(hp, what):
    with pytest.raises(memory.MemoryModelError, match=what):
        memory.Architecture.from_hparams("x", hp, 10)


def test_max_ctx_is_the_longest_that_fits():
    a = smollm2()
    weights = 100 * 2**20
    budget = 300 * 2**20
    c = memory.max_ctx(a, weights, "f16", "f16", budget, limit=1 << 20)
    assert c % 256 == 0
    assert memory.footprint(a, weights, "f16", "f16", c).total <= budget
    assert memory.footprint(a, weights, "f16", "f16", c + 256).total > budget
    # a cheaper cache reaches further; the trained context caps by default
    assert memory.max_ctx(a, weights, "q4_0", "q4_0", budget, limit=1 << 20) > c
    assert memory.max_ctx(a, weights, "q4_0", "q4_0", 2**40) == 8192
    assert memory.max_ctx(a, weights, "f16", "f16", 50 * 2**20) == 0


@pytest.mark.parametrize("text, n", [("24GiB", 24 * 2**30), ("24", 24 * 2**30), ("23.5 GiB", int(23.5 * 2**30)),
                                     ("16000MiB", 16000 * 2**20), ("24GB", 24 * 10**9)])
def test_parse_size(text, n):
    assert memory.parse_size(text) == n


def test_parse_size_rejects_nonsense():
    with pytest.raises(UsageError, match="24GiB"):
        memory.parse_size("lots")


def test_footprint_against_llama_cpp_on_cuda():
    """An H100 run at ctx 8192 (see the fixture's README): our VRAM estimate is never below llama.cpp's
    device account and at most 10 % above it; the CUDA context comes on top (the reserve)."""
    from .helpers import FIXTURES

    lines = (FIXTURES / "0c1e570-cuda-h100" / "ppl_breakdown.jsonl").read_text().splitlines()
    weights = 96_576_768  # tensor data of SmolLM2-135M-Instruct.Q4_1.gguf (92.1 MiB)
    for line, cache in zip(lines, ("f16", "q8_0", "q4_0")):
        rows = perplexity.parse_memory_breakdown(line)
        device = perplexity.breakdown_total(rows)
        assert [r["name"] for r in rows] == ["CUDA0", "Host"] and device == rows[0]["self"]
        ours = memory.footprint(smollm2(), weights, cache, cache, 8192).total / 2**20
        assert device <= ours <= device * 1.10
    peaks = [int(x.split("peak_mib ")[1]) for x in
             (FIXTURES / "0c1e570-cuda-h100" / "vram-peak.txt").read_text().splitlines() if "peak_mib" in x]
    devices = [perplexity.breakdown_total(perplexity.parse_memory_breakdown(x)) for x in lines]
    overhead = [p - d for p, d in zip(peaks, devices)]
    assert all(600 <= o <= 620 for o in overhead)  # measured CUDA context ≈ 610 MiB: --reserve covers it
    from orchestrator.commands import GPU_RESERVE

    assert memory.parse_size(GPU_RESERVE) / 2**20 > max(overhead)


def test_a_sliding_window_model_reports_two_caches_and_the_estimate_matches_their_sum(fixture_text):
    """Gemma 3 270M at ctx 4096: llama.cpp prints one cache for its 3 full-attention layers (4096 cells)
    and one for its 15 sliding-window layers (1024 cells); both count."""
    import json

    from .helpers import BUILD, FIXTURES

    rep = perplexity.parse_kv_report(fixture_text("gemma3_kv_probe.stdout"))
    assert [(c["layers"], c["cells"], c["k_mib"]) for c in rep["caches"]] == [(3, 4096, 6.0), (15, 1024, 7.5)]
    assert (rep["k_mib"], rep["v_mib"], rep["total_mib"], rep["layers"]) == (13.5, 13.5, 27.0, 18)
    src = json.loads((FIXTURES / BUILD / "gemma3_gguf_info.json").read_text())["source"]
    a = memory.Architecture.from_hparams(src["architecture"], src["hparams"], src["n_vocab"])
    k, v = a.kv_bytes("f16", "f16", 4096)
    assert (k / 2**20, v / 2**20) == (rep["k_mib"], rep["v_mib"])
