"""The memory model against llama.cpp itself: the K/V sizes it reports when it allocates the cache."""

import pytest

from orchestrator.inputs import gguf_info
from orchestrator.plan import memory
from orchestrator import procs
from orchestrator.tools import perplexity

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def info(demo_model):
    return gguf_info.read(demo_model)


@pytest.fixture(scope="module")
def arch(info):
    return memory.Architecture.from_hparams(info.architecture, info.hparams, info.n_vocab)


@pytest.mark.parametrize("ctx", [512, 4000])
@pytest.mark.parametrize("cache", ["f16", "q8_0", "q4_0"])
def test_kv_size_agrees_with_llama_cpp_within_2_percent(tools, demo_model, info, arch, ctx, cache):
    argv = perplexity.kv_probe_argv(tools.exe("llama-perplexity"), demo_model, ctx=ctx,
                                    type_k=cache, type_v=cache)
    res = procs.run(argv, timeout=120)
    rep = perplexity.parse_kv_report(res.stdout + res.stderr)
    assert rep is not None, res.tail(20)
    k, v = arch.kv_bytes(cache, cache, ctx)
    weights_bytes = info.tensor_bytes
    assert rep["n_ctx"] == memory.pad(ctx) and rep["type_k"] == rep["type_v"] == cache
    assert k / 2**20 == pytest.approx(rep["k_mib"], rel=0.02)
    assert v / 2**20 == pytest.approx(rep["v_mib"], rel=0.02)
    assert (k + v) / 2**20 == pytest.approx(rep["total_mib"], rel=0.02)
    # the whole footprint against llama.cpp's own account: never below it, at most 10 % above
    ours = memory.footprint(arch, weights_bytes, cache, cache, ctx).total / 2**20
    theirs = perplexity.breakdown_total(perplexity.parse_memory_breakdown(res.stdout))
    assert theirs <= ours <= theirs * 1.10


def test_memory_command_checks_itself_against_llama_cpp(demo_model, capsys):
    from orchestrator.cli import main

    assert main(["memory", str(demo_model), "--ctx", "1000,6000", "--pairs", "f16/f16,q8_0/q4_0", "--check"]) == 0
    out = capsys.readouterr().out
    assert "llama, 30 layers, 0 sliding-window" in out and "K/V per token (full layers, f16): 22.5 KiB" in out
    worst = float(out.rsplit("largest K or V difference from llama.cpp (CPU): ", 1)[1].split(" %")[0])
    assert worst < 2.0
    assert out.count("\n1024  ") == 0 and "6000  q8_0/q4_0" in out
