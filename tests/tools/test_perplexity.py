"""llama-perplexity parsing and judging, on outputs recorded from real runs (see fixtures README)."""

import struct

import pytest

from orchestrator.errors import ToolFailed
from orchestrator.tools import perplexity as tp


def run(fixture_text, name):
    return int(fixture_text(f"{name}.rc")), fixture_text(f"{name}.stdout"), fixture_text(f"{name}.stderr")


def test_kld_block_every_statistic(fixture_text):
    s = tp.parse_kld(fixture_text("ppl_kld.stdout") + fixture_text("ppl_kld.stderr"))
    assert (s["ppl_q"], s["ppl_q_err"], s["ppl_base"]) == (13.943169, 2.545992, 13.270085)
    assert s["cor_ln_ppl"] == 99.06 and s["ln_ratio"] == 0.049477 and s["ppl_ratio_err"] == 0.026395
    assert (s["kld_mean"], s["kld_mean_err"], s["kld_max"]) == (0.05344, 0.002969, 0.2971)
    assert (s["kld_p99_9"], s["kld_p99"], s["kld_p95"], s["kld_p90"]) == (0.281977, 0.215509, 0.147637, 0.111509)
    assert (s["kld_median"], s["kld_p10"], s["kld_p5"], s["kld_p1"], s["kld_p0_1"], s["kld_min"]) == \
        (0.042338, 0.006388, 0.002685, 0.000738, 0.000225, 0.00012)
    assert (s["dp_mean"], s["dp_mean_err"], s["dp_max"], s["dp_p75"], s["dp_median"]) == \
        (-0.797, 0.371, 18.352, 0.865, -0.009)
    assert (s["dp_p25"], s["dp_p5"], s["dp_p0_1"], s["dp_min"]) == (-1.55, -12.784, -26.396, -28.214)
    assert (s["rms_dp"], s["rms_dp_err"], s["same_top"], s["same_top_err"]) == (5.935, 0.478, 88.889, 1.984)
    assert s["n_chunks"] == 4 and "unparsed" not in s


def test_unknown_statistics_are_kept_not_dropped(fixture_text):
    text = fixture_text("ppl_kld.stdout").replace("Same top p:",
                                                  "Same top p:  1.0 ± 0.1 %\nTop-5 agree:  97.1%\nSame top p:")
    assert tp.parse_kld(text)["unparsed"] == {"Top-5 agree": [97.1]}


def test_judge_kld_accepts_a_good_run(fixture_text):
    rc, out, err = run(fixture_text, "ppl_kld")
    base = tp.parse_final(fixture_text("ppl_base.stderr"))
    assert base == (13.27, 2.36883)
    assert tp.judge_kld(rc, out, err, base[0])["kld_mean"] == 0.05344


def test_judge_kld_rejects_another_base(fixture_text):
    rc, out, err = run(fixture_text, "ppl_kld")
    with pytest.raises(ToolFailed, match="does not match the reference"):
        tp.judge_kld(rc, out, err, 13.5)


@pytest.mark.parametrize("name, reason", [
    ("ppl_missing_base", "base logits file missing"),
    # the tool exits 0 and prints statistics (a base PPL of 0): judged from the output, a failure
    ("ppl_vocab_mismatch", "vocabulary differs from the reference"),
    ("ppl_qv_no_fa", "quantized V cache needs flash attention"),
])
def test_judge_kld_failures(fixture_text, name, reason):
    rc, out, err = run(fixture_text, name)
    with pytest.raises(ToolFailed, match=reason):
        tp.judge_kld(rc, out, err, 13.27)


def _logits(tmp_path, n_ctx, n_vocab, n_chunk, size=None):
    path = tmp_path / "base.kld"
    body = b"_logits_" + struct.pack("<iii", n_ctx, n_vocab, n_chunk)
    full = tp.logits_size(n_ctx, n_vocab, n_chunk)
    path.write_bytes(body + b"\0" * ((size or full) - len(body)))
    return path


def test_judge_base_checks_the_file(fixture_text, tmp_path):
    rc, out, err = run(fixture_text, "ppl_base")
    good = _logits(tmp_path, 128, 49152, 4)
    assert tp.judge_base(rc, out, err, good, 49152, 128)["ppl_base"] == 13.27
    short = _logits(tmp_path, 128, 49152, 4, size=tp.logits_size(128, 49152, 4) - 2)
    with pytest.raises(ToolFailed, match="logits file inconsistent"):
        tp.judge_base(rc, out, err, short, 49152, 128)


def test_judge_base_too_short_corpus_exits_zero(fixture_text, tmp_path):
    rc, out, err = run(fixture_text, "ppl_too_short")
    assert rc == 0
    stub = tmp_path / "stub.kld"
    stub.write_bytes(b"_logits_" + struct.pack("<i", 128))  # what the tool leaves: a 12-byte stub
    with pytest.raises(ToolFailed, match="corpus too short"):
        tp.judge_base(rc, out, err, stub, 49152, 128)


def test_logits_size_matches_the_documented_measurement():
    assert tp.logits_size(128, 49152, 10) == 61_941_700


def test_argv_is_a_list_with_every_number_changing_flag():
    argv = tp.kld_argv("llama-perplexity", "q.gguf", "b.kld", ctx=512, batch=2048, ubatch=512, cache_k="q8_0",
                       cache_v="q4_0", flash_attn="on", gpu_layers=999, threads=None, extra=[])
    joined = " ".join(argv)
    for part in ("-c 512", "-b 2048", "-ub 512", "-ctk q8_0", "-ctv q4_0", "-fa on", "-ngl 999", "--kl-divergence"):
        assert part in joined
