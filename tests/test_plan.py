"""Planning is pure: keys move exactly when something that changes a number moves."""


from orchestrator.jobs import KINDS

from .helpers import CORPUS, build, plan_inputs

def keys(p, kind):
    return {j.label: j.key for j in p.of_kind(kind)}


def test_matrix_and_jobs(tmp_path):
    p = build(tmp_path)
    assert len(p.cells) == 2 * 4  # pairs + k×v cross product, deduplicated
    assert [len(p.of_kind(k)) for k in KINDS] == [1, 0, 2, 1, 8, 0, 0, 8]  # no tasks, no prompts asked
    quantize = p.of_kind("quantize")[0]
    assert quantize.params.input == p.of_kind("reference")[0].key  # quantized from the F16 reference
    assert quantize.params.allow_requantize is False
    assert p.of_kind("reference")[0].params.allow_requantize is True  # the Q4_1 source is quantized
    order = [list(KINDS).index(j.kind) for j in p.jobs]
    assert order == sorted(order)


def test_logits_size_from_the_exact_formula(tmp_path):
    p = build(tmp_path)
    base = p.of_kind("base")[0]
    assert base.params.n_chunk == 8
    assert base.params.logits_bytes == 20 + 4 * 8 * 256 + 8 * 127 * (49152 + 4) * 2


def test_keys_stable_and_sensitive(tmp_path):
    a, b = build(tmp_path), build(tmp_path)
    assert [j.key for j in a.jobs] == [j.key for j in b.jobs]
    # bench settings do not touch KLD keys; a new ctx touches base and KLD, not quantize
    c = build(tmp_path, "bench: {repetitions: 2}\n")
    assert keys(a, "kld") == keys(c, "kld") and keys(a, "bench") != keys(c, "bench")
    e = build(tmp_path, weights="[Q8_0, {type: Q4_K_M, tensor_types: {ffn_down: q8_0}}]")
    assert keys(a, "quantize")["quantize Q8_0"] == keys(e, "quantize")["quantize Q8_0"]
    assert keys(a, "quantize")["quantize Q4_K_M"] != keys(e, "quantize")["quantize Q4_K_M"]
    # another toolchain changes every key
    f = build(tmp_path, toolchain={"commit": "deadbee", "backends": ["CUDA"]})
    assert not set(j.key for j in a.jobs) & set(j.key for j in f.jobs)


def test_threads_change_bench_keys_not_kld_keys(tmp_path):
    a = build(tmp_path)
    b = build(tmp_path, "evaluation: {ctx: 256, chunks: 8, threads: 1}\nbench: {threads: 1}\n")
    assert keys(a, "kld") == keys(b, "kld") and keys(a, "bench") != keys(b, "bench")


ADVICE = [  # (weights, imatrix corpus same as evaluated, fragment of the one warning, or None for none)
    ("[Q4_K_M, Q8_0]", False, None),
    ("[{type: Q8_0, imatrix: {corpus: wikitext-2}}]", False, "Q8_0 uses no importance matrix"),
    ("[{type: Q4_K_M, imatrix: {corpus: python-docs}}]", True, "calibrated on the evaluated text"),
    ("[{type: Q4_K_M, imatrix: {corpus: wikitext-2}}]", False, None),
    ("[MXFP4_MOE]", False, "llama has none"),
    ("[TQ1_0]", False, "TQ1_0 is a ternary format for models trained for it"),
    ("[Q1_0]", False, "Q1_0 is a 1-bit format"),
]


def test_plan_time_advice(tmp_path):
    from orchestrator.recipe import advice

    for weights, same, fragment in ADVICE:
        inp = plan_inputs(tmp_path, weights, CORPUS if same else None)
        got = advice.warnings(inp)
        assert (got == []) if fragment is None else (len(got) == 1 and fragment in got[0]), (weights, got)
