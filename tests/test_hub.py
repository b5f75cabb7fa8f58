"""Model and corpus fetching, offline: the Hugging Face paths resolve from a local HF cache
laid out exactly as huggingface_hub writes it (the stand-in for the network)."""


import pandas as pd
import pytest

from orchestrator.inputs import hub
from orchestrator.errors import FetchError, InputFileError
from orchestrator.recipe.model import CorpusSpec, ModelSpec

from .doubles import tiny_gguf
from .helpers import hf_cache

@pytest.fixture
def offline(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hf_file_from_the_cache(offline, tmp_path):
    model = tiny_gguf(tmp_path / "src" / "m.gguf")
    snap = hf_cache(offline, "org/model-GGUF", {"model-Q4_K_M.gguf": model, "model-Q8_0.gguf": model})
    got = hub.fetch_model(ModelSpec(hf={"repo": "org/model-GGUF", "file": "model-Q4_K_M.gguf"}), tmp_path)
    assert got == snap / "model-Q4_K_M.gguf"
    got = hub.fetch_model(ModelSpec(hf={"repo": "org/model-GGUF", "quant": "q8_0"}), tmp_path)
    assert got.name == "model-Q8_0.gguf"


def test_hf_sharded_model_needs_every_shard(offline, tmp_path):
    model = tiny_gguf(tmp_path / "src" / "m.gguf")
    names = [f"big/big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    hf_cache(offline, "org/big", {n: model for n in names})
    got = hub.fetch_model(ModelSpec(hf={"repo": "org/big", "quant": "Q4_K_M"}), tmp_path)
    assert got.name == "big-Q4_K_M-00001-of-00003.gguf"
    (got.parent / "big-Q4_K_M-00003-of-00003.gguf").unlink()
    with pytest.raises(FetchError, match=r"shards \[3\] of 3 are missing"):
        hub.fetch_model(ModelSpec(hf={"repo": "org/big", "file": names[0]}), tmp_path)


def test_hf_missing_offline_is_a_clear_error(offline, tmp_path):
    with pytest.raises(FetchError, match="not in the Hugging Face cache"):
        hub.fetch_model(ModelSpec(hf={"repo": "org/absent", "file": "x.gguf"}), tmp_path)


def test_ambiguous_quant(offline, tmp_path):
    model = tiny_gguf(tmp_path / "src" / "m.gguf")
    hf_cache(offline, "org/two", {"a-Q4_K_M.gguf": model, "b-Q4_K_M.gguf": model})
    with pytest.raises(FetchError, match="matches 2 GGUF files"):
        hub.fetch_model(ModelSpec(hf={"repo": "org/two", "quant": "Q4_K_M"}), tmp_path)


def test_wikitext_through_the_hub(offline, tmp_path):
    pq = tmp_path / "t.parquet"
    pd.DataFrame({"text": ["", " = Valkyria Chronicles = \n", "", " Senjō no Valkyria 3 \n"]}).to_parquet(pq)
    hf_cache(offline, "Salesforce/wikitext", {"wikitext-2-raw-v1/test-00000-of-00001.parquet": pq}, "datasets")
    text = hub.corpus_text(CorpusSpec(name="wikitext-2"), tmp_path)
    assert text == " = Valkyria Chronicles = \n Senjō no Valkyria 3 \n"


def test_wikitext_offline_without_cache(offline, tmp_path):
    with pytest.raises(FetchError, match="use corpus: python-docs"):
        hub.corpus_text(CorpusSpec(name="wikitext-2"), tmp_path)


def test_python_docs_is_deterministic_and_long(tmp_path):
    a = hub.materialize_corpus(CorpusSpec(name="python-docs"), tmp_path, tmp_path / "c")
    b = hub.materialize_corpus(CorpusSpec(name="python-docs"), tmp_path, tmp_path / "c")
    assert a == b and a.n_chars > 300_000 and a.path.read_text().startswith(hub.python_docs_text()[:100])


def test_local_path_relative_to_recipe(tmp_path):
    model = tiny_gguf(tmp_path / "models" / "m.gguf")
    assert hub.fetch_model(ModelSpec(path="models/m.gguf"), tmp_path) == model
    with pytest.raises(InputFileError, match="no such file"):
        hub.fetch_model(ModelSpec(path="models/none.gguf"), tmp_path)
