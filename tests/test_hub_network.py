"""Hugging Face downloads over a faulty network: the real `huggingface_hub` client, our retry policy,
and a stand-in Hub on 127.0.0.1 (tests/hf_standin.py) serving a sharded GGUF repository."""

from pathlib import Path

import pandas as pd
import pytest

from orchestrator.inputs import hub
from orchestrator.errors import FetchError
from orchestrator.files import sha256_file
from orchestrator.recipe.model import CorpusSpec, ModelSpec, TaskSpec
from orchestrator.inputs.tasksets import TASK_SETS

from .hf_standin import Fault, HubStandIn, Repo
from .doubles import written
from .helpers import hellaswag_text

SHARDS = [f"big/big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def gguf_bytes(tmp: Path, name: str, n: int) -> bytes:
    import gguf
    import numpy as np

    path = tmp / name
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(name)
    w.add_tensor("blk.0.ffn_up.weight", np.arange(n, dtype=np.float32).reshape(-1, 256))
    written(w)
    return path.read_bytes()


@pytest.fixture(scope="module")
def repo_files(tmp_path_factory) -> dict[str, bytes]:
    tmp = tmp_path_factory.mktemp("repo")
    files = {name: gguf_bytes(tmp, f"s{i}.gguf", 256 * 1024 * (4 - i)) for i, name in enumerate(SHARDS, 1)}
    files["big/big-Q8_0.gguf"] = gguf_bytes(tmp, "q8.gguf", 256)
    files["README.md"] = b"# big\n"
    return files


@pytest.fixture
def standin(repo_files, tmp_path, monkeypatch):
    """The stand-in Hub with the sharded repository, a gated copy, and wikitext; fast retries."""
    from huggingface_hub import constants

    pq = tmp_path / "wt.parquet"
    pd.DataFrame({"text": [" = Valkyria Chronicles = \n", " Senjō no Valkyria 3 \n"]}).to_parquet(pq)
    repos = [Repo("org/big-GGUF", repo_files), Repo("org/gated-GGUF", repo_files, gated=True),
             Repo(hub.WIKITEXT[0], {hub.WIKITEXT[1]: pq.read_bytes()}, kind="datasets"),
             Repo(TASK_SETS["hellaswag"].repo, {TASK_SETS["hellaswag"].file: hellaswag_text(12).encode()},
                  kind="datasets")]
    monkeypatch.setattr(hub, "BACKOFF_S", 0.01)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)  # 10 MiB on real models
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read at import, maybe in an offline test
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with HubStandIn(repos, granted_tokens={"hf_granted_0123456789"}, stall_s=3) as s:
        monkeypatch.setenv("HF_ENDPOINT", s.url)
        yield s


def fetch(repo: str = "org/big-GGUF", quant: str = "Q4_K_M") -> Path:
    return hub.fetch_model(ModelSpec(hf={"repo": repo, "quant": quant}), Path("."))


def cached_files_are_sound(cache: Path) -> None:
    """Every file the HF cache shows under snapshots/ is whole: its bytes hash to its blob's name."""
    for link in cache.rglob("snapshots/**/*"):
        if link.is_file():
            blob = link.resolve()
            assert sha256_file(blob) == blob.name, link


def test_a_sharded_model_downloads_through_every_fault(standin, repo_files, tmp_path):
    standin.inject(Fault("500", "/revision/"), Fault("429", "/revision/"), Fault("503", "/tree/"),
                   Fault("500", SHARDS[0]), Fault("drop", SHARDS[0]), Fault("cut", SHARDS[1]),
                   Fault("stall", SHARDS[2]), Fault("corrupt", SHARDS[2]), Fault("cut", SHARDS[2]))
    first = fetch()
    assert first.name == Path(SHARDS[0]).name
    for name in SHARDS:
        assert (first.parent / Path(name).name).read_bytes() == repo_files[name]
    assert standin.faults == []  # every fault was met
    resumed = [r for n in SHARDS for r in standin.downloads(n) if r.range]
    assert resumed, "a body cut short is resumed with a Range request, not fetched again from byte 0"
    assert not (first.parent / "big-Q8_0.gguf").exists()  # only the quant asked for
    cached_files_are_sound(tmp_path / "hf")
    assert not list((tmp_path / "hf").rglob("*.incomplete"))


def test_a_damaged_file_never_stays_in_the_cache(standin, repo_files, tmp_path):
    """The bytes arrive whole in length but one is wrong: huggingface_hub keeps such a file as it is;
    we check it against the sha256 the Hub named it by, remove it and fetch it again."""
    standin.inject(Fault("corrupt", SHARDS[1]))
    first = fetch()
    assert (first.parent / Path(SHARDS[1]).name).read_bytes() == repo_files[SHARDS[1]]
    assert len(standin.downloads(SHARDS[1])) == 2
    cached_files_are_sound(tmp_path / "hf")


def test_a_download_cut_again_and_again_is_resumed_each_time(standin, repo_files):
    standin.inject(*[Fault("cut", SHARDS[0])] * 4)
    first = fetch()
    assert first.read_bytes() == repo_files[SHARDS[0]]
    gets = standin.downloads(SHARDS[0])
    assert len(gets) == 5 and gets[0].range is None and all(r.range for r in gets[1:])
    offsets = [int(r.range.removeprefix("bytes=").split("-")[0]) for r in gets[1:]]
    assert 0 < offsets[0] < offsets[1] < offsets[2] < offsets[3]  # each from the last byte written


def test_retry_after_is_obeyed(standin, monkeypatch):
    import time

    stamps = []
    real = hub._wait
    monkeypatch.setattr(hub, "_wait", lambda state: stamps.append(real(state)) or stamps[-1])
    standin.inject(Fault("429", "/revision/"))
    t0 = time.monotonic()
    fetch()
    assert stamps == [1.0] and time.monotonic() - t0 >= 1.0


def test_after_the_last_try_one_line_says_what_happened(standin, tmp_path):
    standin.inject(*[Fault("503", SHARDS[0])] * 100)
    with pytest.raises(FetchError) as err:
        fetch()
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("org/big-GGUF@main: Hugging Face download failed 5 times, last: HTTP 503 from ")
    assert len(standin.downloads(SHARDS[0])) == 5
    cache = tmp_path / "hf"
    assert not list(cache.rglob("*.incomplete"))
    cached_files_are_sound(cache)
    kept = {p.name for p in cache.rglob("snapshots/**/*.gguf")}
    assert kept == {Path(SHARDS[1]).name, Path(SHARDS[2]).name}  # the complete shards stay

    standin.faults.clear()
    fetch()
    assert [len(standin.downloads(n)) for n in SHARDS] == [6, 1, 1]  # the next run fetched the rest


def test_server_errors_to_the_end(standin):
    standin.inject(*[Fault("503", "/revision/")] * 10)
    with pytest.raises(FetchError, match=r"failed 5 times, last: HTTP 503 from http://127\.0\.0\.1"):
        fetch()
    assert len([r for r in standin.log if "/revision/" in r.path]) == 5


def test_a_gated_repository_says_which_token_is_missing(standin, monkeypatch):
    with pytest.raises(FetchError) as err:
        fetch("org/gated-GGUF")
    assert "gated" in str(err.value) and "HF_TOKEN is not set" in str(err.value)
    assert f"{standin.url}/org/gated-GGUF" in str(err.value)
    assert len(standin.log) == 1  # refused access is not tried again

    monkeypatch.setenv("HF_TOKEN", "hf_refused_9876543210")
    with pytest.raises(FetchError, match="the token that was sent was refused") as err:
        fetch("org/gated-GGUF")
    assert "hf_refused" not in str(err.value)

    monkeypatch.setenv("HF_TOKEN", "hf_granted_0123456789")
    assert fetch("org/gated-GGUF").is_file()
    assert all(r.authorized for r in standin.log[2:])


def test_no_such_repository(standin):
    with pytest.raises(FetchError, match="no such repository on Hugging Face, or it is private"):
        fetch("org/absent")


def test_wikitext_through_a_faulty_network(standin, tmp_path):
    standin.inject(Fault("500", "/resolve/", "HEAD"), Fault("cut", ".parquet"))
    text = hub.corpus_text(CorpusSpec(name="wikitext-2"), tmp_path)
    assert text == " = Valkyria Chronicles = \n Senjō no Valkyria 3 \n"


def test_local_only_never_touches_the_network(standin, tmp_path):
    """`plan` reads what is cached, at once: no request, whatever the network would do."""
    with pytest.raises(FetchError, match="cannot be downloaded now"):
        hub.materialize_corpus(CorpusSpec(name="wikitext-2"), tmp_path, tmp_path / "c", local_only=True)
    with pytest.raises(FetchError, match="not in the Hugging Face cache"):
        hub.fetch_model(ModelSpec(hf={"repo": "org/big-GGUF", "quant": "Q4_K_M"}), tmp_path, local_only=True)
    assert standin.log == []
    fetch()
    assert hub.fetch_model(ModelSpec(hf={"repo": "org/big-GGUF", "quant": "Q4_K_M"}), tmp_path, local_only=True)


def test_a_named_task_set_downloads_is_checked_and_pinned(standin, tmp_path):
    standin.inject(Fault("500", TASK_SETS["hellaswag"].file), Fault("cut", TASK_SETS["hellaswag"].file))
    spec = TaskSpec(name="hellaswag", tasks=4)
    got = hub.task_file(spec, tmp_path)
    assert (got.name, got.format, got.n_tasks) == ("hellaswag", "hellaswag", 12)
    assert got.path.read_text() == hellaswag_text(12) and got.sha256 == sha256_file(got.path)
    cached_files_are_sound(tmp_path / "hf")
    # offline, from the cache; the sha256 first seen is the one every later fetch must have
    assert hub.task_file(spec, tmp_path, local_only=True).sha256 == got.sha256
    # the set changed under the same revision since it was first fetched (here: first seen with other bytes)
    import json

    from orchestrator.tools.toolchain import cache_root

    memo = cache_root() / "task-sets.json"
    pins = json.loads(memo.read_text())
    assert list(pins.values()) == [got.sha256]
    memo.write_text(json.dumps({k: "0" * 64 for k in pins}))
    with pytest.raises(FetchError, match=r"its sha256 is .* when it was first fetched: the set changed"):
        hub.task_file(spec, tmp_path, local_only=True)


def test_a_named_task_set_offline_without_cache_says_what_to_do(standin, tmp_path):
    with pytest.raises(FetchError, match=r"winogrande.*not in the Hugging Face cache.*give the task as \{path: "
                                         r"FILE, format: winogrande\} offline"):
        hub.task_file(TaskSpec(name="winogrande"), tmp_path, local_only=True)
