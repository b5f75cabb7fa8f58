"""Local files a user names that are missing or are not what they must be: one line naming the path
and what it is, exit 2, nothing written; never a traceback."""

import pytest

from orchestrator.cli import main

from .test_hub import tiny_gguf


def _recipe(tmp_path, model: str, corpus: str = "python-docs") -> str:
    path = tmp_path / "r.yaml"
    corpus_field = corpus if corpus == "python-docs" else f"{{path: {corpus}}}"
    path.write_text(f"name: t\nmodel: {{path: {model}}}\nweights: [Q8_0]\n"
                    f"evaluation: {{corpus: {corpus_field}}}\n")
    return str(path)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("make, says", [
    (lambda d: (d / "model.gguf").write_text("name: a recipe, not a model\n"),
     "not a GGUF file (a text file beginning 'name: a recipe, not a model'"),
    (lambda d: (d / "model.gguf").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\n"),
     "not a GGUF file (a Git LFS pointer, not the file itself"),
    (lambda d: (d / "model.gguf").mkdir(), "is a directory, not a GGUF file"),
    (lambda d: (d / "model.gguf").write_bytes(b""), "not a GGUF file (an empty file"),
    (lambda d: (d / "model.gguf").write_bytes(tiny_gguf(d / "t.gguf").read_bytes()[:40]),
     "not a readable GGUF (truncated or damaged"),
    (lambda d: None, "model.gguf: no such file (the model, a GGUF file)"),
])
def test_model_that_is_not_a_gguf(tmp_path, capsys, make, says):
    make(tmp_path)
    recipe = _recipe(tmp_path, "model.gguf")
    ws = tmp_path / "ws"
    for args in (["plan", recipe], ["run", recipe], ["memory", str(tmp_path / "model.gguf")]):
        assert main([*args, "--workspace", str(ws)] if args[0] != "memory" else args) == 2, args
        err = _one_line(capsys)
        assert str(tmp_path / "model.gguf") in err and says in err, (args, err)
    assert not ws.exists(), "bad input must not write anything"


def test_plan_says_a_missing_local_corpus_is_missing(tmp_path, capsys):
    tiny_gguf(tmp_path / "m.gguf")
    recipe = _recipe(tmp_path, "m.gguf", corpus="absent.txt")
    for command in ("plan", "run"):
        assert main([command, recipe, "--workspace", str(tmp_path / "ws")]) == 2
        err = _one_line(capsys)
        assert f"{tmp_path / 'absent.txt'}: no such file (the corpus)" in err, err
        assert "fetches" not in err


def test_corpus_that_is_a_directory(tmp_path, capsys):
    tiny_gguf(tmp_path / "m.gguf")
    (tmp_path / "texts").mkdir()
    assert main(["plan", _recipe(tmp_path, "m.gguf", corpus="texts"), "--workspace", str(tmp_path / "ws")]) == 2
    assert "texts: is a directory, not a file (the corpus)" in _one_line(capsys)
