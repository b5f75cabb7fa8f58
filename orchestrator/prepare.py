"""Gather what a plan is computed from: the recipe, the model's hash and metadata, the corpus,
the toolchain identity and the host. The only step between `recipe` and `plan` that reads disk."""

from __future__ import annotations

import json
import platform
from pathlib import Path

from . import gguf_info, hub, plan, procs, recipe
from .errors import RecipeError
from .files import sha256_file, sha256_text, write_memo
from .toolchain import Toolchain, cache_root, _cpu_model
from .tools import quantize as tq
from .workspace import Workspace


def host_info(tc: Toolchain) -> dict:
    gpus = [d for d in tc.devices if not d.startswith("CPU")]
    return {"cpu": _cpu_model(), "machine": platform.machine(), "gpu": "; ".join(gpus)}


def check_toolchain_types(r: recipe.Recipe, path: Path, tc: Toolchain) -> None:
    """Weight types must be in the toolchain's own list (builds add and drop types)."""
    memo = cache_root() / "quant-types" / f"{tc.commit}-{sha256_text(str(tc.bin_dir))[:12]}.json"
    if memo.exists():
        known = json.loads(memo.read_text())
    else:
        res = procs.run([tc.exe("llama-quantize"), "--help"], timeout=60)
        known = tq.parse_help(res.stdout + res.stderr)
        if known:
            write_memo(memo, json.dumps(known))
    wanted = [w.type for w in r.weights if w.type != "source"]
    if r.reference.type != "source":
        wanted.append(r.reference.type)
    for i, t in enumerate(wanted):
        if known and t not in known:
            raise RecipeError(str(path), f"weights[{i}]", f"{t} is not a type of this llama-quantize "
                              f"({tc.commit}); it knows: {', '.join(known)}")


def check_local_files(r: recipe.Recipe, recipe_path: Path) -> None:
    """The files a recipe names on this machine exist and are what they must be; checked before the
    workspace is touched, so bad input writes nothing (InputFileError, exit 2)."""
    rdir = Path(recipe_path).resolve().parent
    if r.model.path is not None:
        gguf_info.check_readable(hub.fetch_model(r.model, rdir))
    corpora = [r.evaluation.corpus] + [w.imatrix.corpus for w in r.weights if w.imatrix and w.imatrix.corpus]
    for c in corpora:
        if c.path is not None:
            hub.text_file((rdir / Path(c.path).expanduser()).resolve(), "corpus")
    for w in r.weights:
        if w.imatrix is not None and w.imatrix.file is not None:
            f = hub.local_file((rdir / Path(w.imatrix.file).expanduser()).resolve(), f"imatrix of {w.label}")
            if r.model.path is not None:
                gguf_info.check_imatrix(f, hub.fetch_model(r.model, rdir))


def inputs(recipe_path: str | Path, ws: Workspace, tc: Toolchain, fetch: bool = True) -> plan.PlanInputs:
    path = Path(recipe_path)
    r = recipe.load(path)
    check_toolchain_types(r, path, tc)
    rdir = path.resolve().parent
    src = gguf_info.check_file(hub.fetch_model(r.model, rdir, local_only=not fetch))
    memo = cache_root() / "file-hashes.json"
    sha = sha256_file(src, memo)
    info = gguf_info.read(src, cache_root() / "gguf-info", sha)
    corpus = hub.materialize_corpus(r.evaluation.corpus, rdir, ws.corpora, local_only=not fetch)
    im_inputs = {}
    for w in r.weights:
        if w.imatrix is None:
            continue
        if w.imatrix.file is not None:
            f = hub.local_file((rdir / Path(w.imatrix.file).expanduser()).resolve(), f"imatrix of {w.label}")
            if r.model.path is None:  # a local model's imatrix was checked with the local files
                gguf_info.check_imatrix(f, src)
            im_inputs[w.label] = (f, sha256_file(f, memo))
        else:
            im_inputs[w.label] = hub.materialize_corpus(w.imatrix.corpus, rdir, ws.corpora, local_only=not fetch)
    return plan.PlanInputs(recipe=r, recipe_dir=rdir, source_path=src, source_sha=sha, source_info=info,
                           corpus=corpus, toolchain=tc.identity(), host=host_info(tc),
                           imatrix_inputs=im_inputs)
