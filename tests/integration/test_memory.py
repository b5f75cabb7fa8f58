"""The memory model against llama.cpp itself: the K/V sizes it reports when it allocates the cache."""

import pytest

from orchestrator import gguf_info, memory, procs
from orchestrator.tools import perplexity

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def arch(demo_model):
    info = gguf_info.read(demo_model)
    return memory.Architecture.from_hparams(info.architecture, info.hparams, info.n_vocab)


@pytest.mark.parametrize("ctx", [512, 4000])
@pytest.mark.parametrize("cache", ["f16", "q8_0", "q4_0"])
def test_kv_size_agrees_with_llama_cpp_within_2_percent(tools, demo_model, arch, tmp_path, ctx, cache):
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("Too short to evaluate: llama-perplexity stops right after allocating the cache.")
    argv = perplexity.kv_probe_argv(tools.exe("llama-perplexity"), demo_model, tiny, ctx=ctx,
                                    type_k=cache, type_v=cache)
    res = procs.run(argv, timeout=120)
    rep = perplexity.parse_kv_report(res.stdout + res.stderr)
    assert rep is not None, res.tail(20)
    k, v = arch.kv_bytes(cache, cache, ctx)
    assert rep["n_ctx"] == memory.pad(ctx) and rep["type_k"] == rep["type_v"] == cache
    assert k / 2**20 == pytest.approx(rep["k_mib"], rel=0.02)
    assert v / 2**20 == pytest.approx(rep["v_mib"], rel=0.02)
    assert (k + v) / 2**20 == pytest.approx(rep["total_mib"], rel=0.02)
