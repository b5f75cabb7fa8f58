"""A big model planned honestly: a 248k-vocabulary model at 16k context over wikitext-2. `plan` prints the
size of the reference logits and whether the disk holds them; `run` refuses to start when it does not,
before any tool runs. The model is a GGUF with a real model's metadata (Qwen3.5's vocabulary and
attention shape) and one small tensor: the plan reads metadata, never weights."""

from collections import namedtuple

import pandas as pd
import pytest

from orchestrator.inputs import hub
from orchestrator.execute import local
from orchestrator import commands
from orchestrator.cli import main
from orchestrator.results.store import Store
from orchestrator.tools.perplexity import logits_size

from ..helpers import hf_cache
from ..doubles import written

pytestmark = pytest.mark.integration

N_VOCAB, CTX = 248_320, 16_384
WIKITEXT_CHARS = 1_290_000  # the size of wikitext-2-raw's test split


def big_model(path):
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "qwen3")
    w.add_name("big-vocab")
    for key, value in (("vocab_size", N_VOCAB), ("block_count", 64), ("context_length", 262_144),
                       ("embedding_length", 5120), ("feed_forward_length", 17_408),
                       ("attention.head_count", 40), ("attention.head_count_kv", 8),
                       ("attention.key_length", 128), ("attention.value_length", 128)):
        w.add_uint32(f"qwen3.{key}", value)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    w.add_tensor("output_norm.weight", np.ones(5120, dtype=np.float32))
    written(w)
    return path


@pytest.fixture
def big(tmp_path, monkeypatch, tools):
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    pq = tmp_path / "wt.parquet"
    line = " = Valkyria Chronicles III = \n"
    pd.DataFrame({"text": [line] * (WIKITEXT_CHARS // len(line))}).to_parquet(pq)
    hf_cache(cache, hub.WIKITEXT[0], {hub.WIKITEXT[1]: pq}, "datasets")
    big_model(tmp_path / "big.gguf")
    path = tmp_path / "big.yaml"
    path.write_text(f"name: big\nmodel: {{path: big.gguf}}\nreference: source\nweights: [source]\n"
                    f"cache: {{pairs: [[f16, f16], [q8_0, q8_0]]}}\n"
                    f"evaluation: {{corpus: wikitext-2, ctx: {CTX}}}\nbench: {{enabled: false}}\n")
    return path


def free_disk(monkeypatch, gib: float) -> None:
    usage = namedtuple("usage", "total used free")
    fake = lambda _: usage(2**45, 0, int(gib * 2**30))  # noqa: E731
    monkeypatch.setattr(commands.shutil, "disk_usage", fake)
    monkeypatch.setattr(local.shutil, "disk_usage", fake)


def test_plan_prints_the_logits_size_and_run_refuses_when_the_disk_cannot_hold_it(big, tmp_path, monkeypatch,
                                                                                  capsys):
    n_chunk = WIKITEXT_CHARS // 4 // CTX
    size = logits_size(CTX, N_VOCAB, n_chunk)
    assert 70 * 2**30 < size < 75 * 2**30  # 19 chunks of 8,191 scored rows of 248,320 16-bit values

    free_disk(monkeypatch, 50)
    ws = tmp_path / "ws"
    # logits: auto (the default) streams a reference whose file the disk cannot hold, and says why
    assert main(["plan", str(big), "--workspace", str(ws)]) == 0
    assert (f"reference logits c={CTX}: streamed into gangs of KLD runs, no file (the file would be {size / 2**30:.2f} "
            f"GiB, with 50.00 GiB free; {n_chunk} chunks") in capsys.readouterr().out
    big.write_text(big.read_text().replace(f"ctx: {CTX}}}", f"ctx: {CTX}, logits: file}}"))  # a file it must be
    assert main(["plan", str(big), "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert f"n_vocab {N_VOCAB}" in out
    assert f"reference logits c={CTX}: ~{n_chunk} chunks, {size / 2**30:.2f} GiB" in out
    assert (f"disk: {size / 2**30:.2f} GiB to write (models ≈0.0 MiB, reference logits {size / 2**30:.2f} GiB), "
            "50.00 GiB free — DOES NOT FIT") in out

    assert main(["run", str(big), "--workspace", str(ws), "-q"]) == 3  # the machine, not the recipe
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"quantsweep: error: this run writes about {size / 2**30:.2f} GiB (models 0 MiB, "
                              f"reference logits {size / 2**30:.2f} GiB) but {ws} has 50.00 GiB free, on ")
    assert not [p for p in ws.rglob("*") if p.is_file() and p.suffix in (".gguf", ".kld", ".log", ".partial")]
    assert Store.read_only(ws / "store.sqlite").db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0

    free_disk(monkeypatch, 200)
    assert main(["plan", str(big), "--workspace", str(ws)]) == 0
    assert "200.00 GiB free — fits" in capsys.readouterr().out
