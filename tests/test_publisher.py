"""What a publisher met on a new model: the small items (exit codes, export names and integers, sizes)."""

import json

import pytest

from orchestrator import memory
from orchestrator.cli import main
from tests.doubles import big_vocab_gguf


def _imported(tmp_path, fixture_text):
    log = tmp_path / "kld.log"
    log.write_text(fixture_text("ppl_kld.stderr") + fixture_text("ppl_kld.stdout"))
    ws = tmp_path / "ws"
    assert main(["import", str(log), "--workspace", str(ws), "--name", "r"]) == 0
    return ws


def test_export_of_an_unknown_name_says_so(tmp_path, fixture_text, capsys):
    ws = _imported(tmp_path, fixture_text)
    capsys.readouterr()
    assert main(["export", "--workspace", str(ws), "--name", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"quantsweep: error: --name 'nosuch': no such run in {ws}; known: r"


def test_integers_stay_integers_in_every_export(tmp_path, fixture_text, capsys):
    ws = _imported(tmp_path, fixture_text)
    capsys.readouterr()
    assert main(["export", "--workspace", str(ws), "--format", "jsonl"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["ctx"] == 128 and isinstance(row["ctx"], int) and isinstance(row["n_chunks"], int)
    assert main(["export", "--workspace", str(ws), "--format", "csv"]) == 0
    header, first = capsys.readouterr().out.splitlines()[:2]
    cols = dict(zip(header.split(","), first.split(",")))
    assert cols['"ctx"'] == "128"


@pytest.mark.parametrize("text, gib", [("24G", 24.0), ("24", 24.0), ("24GiB", 24.0), ("24 g", 24.0),
                                       ("24GB", 24e9 / 2**30), ("512M", 0.5)])
def test_sizes_a_card_is_sold_with(text, gib):
    assert memory.parse_size(text) == pytest.approx(gib * 2**30)


def test_a_busy_workspace_exits_3(tmp_path, fixture_text, capsys):
    from orchestrator.workspace import Workspace

    ws = _imported(tmp_path, fixture_text)
    with Workspace(ws).lock():
        assert main(["import", str(tmp_path / "kld.log"), "--workspace", str(ws)]) == 3
    assert "is in use by another quantsweep run" in capsys.readouterr().err


def test_a_description_reads_the_tensor_table_not_the_tokenizer(tmp_path):
    """What describes a model equals what gguf-py's full reader gives, on a 262k vocabulary; the long
    arrays are skipped by their lengths (make bench prints the time against gguf-py's)."""
    from gguf import GGUFReader

    from orchestrator import gguf_info

    path = big_vocab_gguf(tmp_path / "big.gguf")
    lean, full = gguf_info.Gguf(path), GGUFReader(path)
    assert [(t.name, t.shape, t.type_name, t.n_elements, t.n_bytes) for t in lean.tensors] == \
        [(t.name, tuple(int(d) for d in t.shape), t.tensor_type.name, int(t.n_elements), int(t.n_bytes))
         for t in full.tensors]
    assert isinstance(lean.fields["tokenizer.ggml.tokens"], gguf_info.LongArray)
    assert lean.fields["gemma3.attention.sliding_window_pattern"] == [True, False, True]
    for key, field in full.fields.items():
        if not key.startswith(("GGUF.", "tokenizer.ggml.")):
            assert lean.fields[key] == field.contents(), key
    info = gguf_info._read(path)
    assert info.n_vocab == 262_144 and info.context_length == 32768 and info.file_type == 15
    assert info.tensor_types == {"F16": 1, "Q8_0": 1, "F32": 1}
    assert info.n_params == 64 * 256 + 32 * 256 + 256
    assert info.hparams["attention.sliding_window"] == 512 and info.hparams["block_count"] == 2


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_a_truncated_model_is_named_not_described(tmp_path, cut):
    from orchestrator import gguf_info
    from orchestrator.errors import InputFileError

    path = big_vocab_gguf(tmp_path / "big.gguf", n_vocab=1000)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(InputFileError, match="not a readable GGUF .truncated or damaged"):
        gguf_info._read(path)
