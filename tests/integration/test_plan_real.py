"""What `plan` knows before any tool runs, with the real tools on the demo model."""

import re
import subprocess

import pytest

from orchestrator.inputs import hub, prepare
from orchestrator.cli import main
from orchestrator.files import sha256_file

from ..helpers import REPO, small_recipe

pytestmark = pytest.mark.integration


def test_the_corpus_is_counted_as_llama_perplexity_counts_it(tmp_path, tools, demo_model, capsys):
    if not tools.has("llama-tokenize"):
        pytest.skip(f"{tools.bin_dir} has no llama-tokenize (`quantsweep toolchain build` builds it)")
    text = tmp_path / "short.txt"
    text.write_text((REPO / "README.md").read_text()[:3000])
    # llama-perplexity's own count, from its refusal of a context the text is too short for
    ppl = subprocess.run([tools.exe("llama-perplexity"), "-m", str(demo_model), "-f", str(text), "-c", "1024"],
                         capture_output=True, text=True, timeout=300)
    theirs = int(re.search(r"tokenizes to only (\d+) tokens", ppl.stderr).group(1))
    corpus = hub.Corpus("short", text, sha256_file(text), 3000)  # memoized by content: the true hashes
    assert prepare.corpus_tokens(tools, demo_model, sha256_file(demo_model), corpus) == theirs
    # plan refuses ctx 1024 on it, with the numbers, before anything runs (and writes no workspace)
    path = small_recipe(tmp_path, demo_model, ctx=1024, corpus=f"{{path: {text}}}")
    ws = tmp_path / "ws"
    capsys.readouterr()
    assert main(["plan", str(path), "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert "evaluation.ctx: ctx 1024 needs at least 2048 tokens of text" in err
    assert f"is {theirs} tokens for this model: use ctx ≤ {theirs // 2}" in err
    assert not ws.exists()  # bad input writes nothing: not even the corpus it counted
    assert main(["run", str(path), "--workspace", str(ws)]) == 2 and not ws.exists()


def test_a_context_beyond_the_model_s_trained_one_is_refused_naming_its_limit(tmp_path, demo_model, capsys):
    path = small_recipe(tmp_path, demo_model, ctx=16384)  # SmolLM2-135M: context_length 8192
    ws = tmp_path / "ws"
    for cmd in ("plan", "run"):
        capsys.readouterr()
        assert main([cmd, str(path), "--workspace", str(ws)]) == 2
        err = capsys.readouterr().err
        assert (f"{path}: evaluation.ctx: ctx 16384 is beyond the model's trained context: {demo_model.name} was "
                "trained for 8192 tokens (its context_length); use ctx ≤ 8192") in err
        assert not ws.exists()
