"""Local files a user names that are missing or are not what they must be: one line naming the path
and what it is, exit 2, nothing written; never a traceback."""

import pytest

from orchestrator.cli import main

from .doubles import tiny_gguf, written


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


def _imatrix_gguf(path, entries: dict):
    """An importance matrix in llama-imatrix's GGUF layout: <tensor>.in_sum2 [n_cols] and .counts."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "imatrix")
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", ["calib.txt"])
    w.add_uint32("imatrix.chunk_count", 4)
    w.add_uint32("imatrix.chunk_size", 128)
    for name, cols in entries.items():
        w.add_tensor(f"{name}.in_sum2", np.ones((1, cols), dtype=np.float32))
        w.add_tensor(f"{name}.counts", np.ones((1, 1), dtype=np.float32))
    written(w)
    return path


def _imatrix_dat(path, entries: dict):
    """The legacy binary layout: n, then per entry: name length, name, ncall, nval, nval floats."""
    import struct

    data = struct.pack("<i", len(entries))
    for name, n in entries.items():
        data += struct.pack("<i", len(name)) + name.encode() + struct.pack("<ii", 1, n) + b"\0" * 4 * n
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, says", [
    (lambda p: _imatrix_gguf(p, {"blk.0.ffn_gate_exps.weight": 2048}),
     "an importance matrix for another model: 1 of its 1 entries name tensors m.gguf lacks "
     "(e.g. blk.0.ffn_gate_exps.weight)"),
    (lambda p: _imatrix_dat(p, {"token_embd.weight": 12}),
     "an importance matrix for another model: 1 of its 1 entries have another row length than m.gguf's "
     "tensors (e.g. token_embd.weight: 12 values, rows of 16)"),
    (lambda p: p.write_text("not an imatrix at all\n"), "not an importance matrix"),
])
def test_an_imatrix_of_another_model_is_refused_before_quantizing(tmp_path, capsys, make, says):
    tiny_gguf(tmp_path / "m.gguf")
    make(tmp_path / "x.imatrix")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\nmodel: {path: m.gguf}\nweights: [{type: Q4_K_M, imatrix: {file: x.imatrix}}]\n")
    for command in ("plan", "run"):
        assert main([command, str(recipe), "--workspace", str(tmp_path / "ws")]) == 2
        err = _one_line(capsys)
        assert err.startswith(f"quantsweep: error: {tmp_path / 'x.imatrix'}: {says}"), err
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize("make", [lambda p: _imatrix_gguf(p, {"token_embd.weight": 16}),
                                  lambda p: _imatrix_dat(p, {"token_embd.weight": 16})])
def test_an_imatrix_of_this_model_is_accepted(tmp_path, make):
    from orchestrator.inputs import gguf_info

    tiny_gguf(tmp_path / "m.gguf")
    gguf_info.check_imatrix(make(tmp_path / "x.imatrix"), tmp_path / "m.gguf")  # no error
    assert gguf_info.imatrix_entries(tmp_path / "x.imatrix") == {"token_embd.weight": 16}
