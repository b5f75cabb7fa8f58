"""Gather what a plan is computed from: the recipe, the model's hash and metadata, the corpus,
the toolchain identity and the host. The only step between `recipe` and `plan` that reads disk."""

from __future__ import annotations

import json
import platform
import re
import shutil
from pathlib import Path

from orchestrator.inputs import gguf_info, hub
from orchestrator.plan import graph as plan
from orchestrator import procs
from orchestrator.recipe import model as recipe
from orchestrator.errors import RecipeError, ToolchainError
from orchestrator.files import sha256_file, sha256_text, write_memo
from orchestrator.tools.toolchain import Toolchain, cache_root, cpu_model
from orchestrator.tools import quantize as tq
from orchestrator.workspace import Workspace


def host_info(tc: Toolchain) -> dict:
    gpus = [d for d in tc.devices if not d.startswith("CPU")]
    return {"cpu": cpu_model(), "machine": platform.machine(), "gpu": "; ".join(gpus)}


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


TOKENS_RE = re.compile(r"^Total number of tokens: (\d+)\s*$", re.M)


def corpus_tokens(tc: Toolchain, model: Path, model_sha: str, corpus: hub.Corpus) -> int | None:
    """How many tokens the corpus is for this model, as llama-perplexity counts them (its BOS, no special
    tokens parsed from the text), by llama-tokenize, which reads only the vocabulary; memoized by the
    model's and the corpus's hashes and the tools' commit (a tokenizer fix changes counts). None where the
    toolchain has no llama-tokenize or it fails."""
    if not tc.has("llama-tokenize"):
        return None
    memo = cache_root() / "token-counts" / f"{model_sha[:32]}-{corpus.sha256[:32]}-{tc.commit}.json"
    try:
        return int(json.loads(memo.read_text())["tokens"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    res = procs.run([tc.exe("llama-tokenize"), "-m", str(model), "-f", str(corpus.path), "--ids",
                     "--no-parse-special", "--show-count", "--log-disable"], timeout=600)
    found = TOKENS_RE.search(res.stdout or "")
    if res.rc != 0 or not found:
        return None
    n = int(found.group(1))
    write_memo(memo, json.dumps({"tokens": n, "corpus": corpus.label}))
    return n


def check_trained_context(inp: plan.PlanInputs, path: Path) -> None:
    """A context beyond what the model was trained for measures extrapolation, not the quant: refused,
    naming the model's limit (its GGUF's context_length)."""
    limit = inp.source_info.context_length
    r = inp.recipe
    asked = [("evaluation.ctx", c) for c in r.evaluation.contexts]
    asked += [(f"weights[{i}].imatrix.ctx", w.imatrix.ctx) for i, w in enumerate(r.weights) if w.imatrix is not None]
    for field, ctx in asked:
        if limit and ctx > limit:
            name = r.model.name or inp.source_path.name
            raise RecipeError(str(path), field, f"ctx {ctx} is beyond the model's trained context: {name} was "
                              f"trained for {limit} tokens (its context_length); use ctx ≤ {limit}")


def check_task_lengths(inp: plan.PlanInputs, path: Path, tc: Toolchain) -> None:
    """Every task must fit the task run's context, or llama-perplexity scores none and says nothing: the
    longest task of each file (by bytes: the text the tool holds at once) is counted by llama-tokenize and
    refused here when over ctx, naming it. Without llama-tokenize, only what is certain: nothing."""
    from orchestrator.tools import tasks as tt

    if not tc.has("llama-tokenize"):
        return
    r = inp.recipe
    for i, t in enumerate(r.tasks):
        tf = inp.task_files[t.name]
        number, text = tt.longest_task(tf.path, tf.format)
        if len(text.encode()) + 2 <= t.ctx:  # a token is at least a byte: it fits, whatever the vocabulary
            continue
        res = procs.run([tc.exe("llama-tokenize"), "-m", str(inp.source_path), "-p", text, "--ids",
                         "--no-parse-special", "--show-count", "--log-disable"], timeout=120)
        found = TOKENS_RE.search(res.stdout or "")
        if res.rc == 0 and found and int(found.group(1)) > t.ctx:
            raise RecipeError(str(path), f"tasks[{i}].ctx", f"task {number} of {tf.path.name} is about "
                              f"{int(found.group(1))} tokens with all its choices, more than ctx {t.ctx}: "
                              f"llama-perplexity would score no task; raise tasks[{i}].ctx")


def check_corpus_length(inp: plan.PlanInputs, path: Path) -> None:
    """llama-perplexity (and llama-imatrix) need at least 2·ctx tokens of text, and find out only after
    loading the model: refused here, with the numbers, before anything runs. Counted by llama-tokenize;
    without it, only what is certain (a token is at least one byte)."""
    r = inp.recipe
    checks = [("evaluation.ctx", r.evaluation.contexts, inp.corpus, inp.corpus_tokens.get(inp.corpus.sha256))]
    for i, w in enumerate(r.weights):
        im = inp.imatrix_inputs.get(w.label)
        if w.imatrix is not None and w.imatrix.corpus is not None and im is not None:
            checks.append((f"weights[{i}].imatrix.ctx", [w.imatrix.ctx], im, inp.corpus_tokens.get(im.sha256)))
    for field, ctxs, corpus, tokens in checks:
        need = 2 * max(ctxs)
        if tokens is not None and tokens < need:
            fits = [c for c in ctxs if 2 * c <= tokens]
            what = f"use ctx ≤ {tokens // 2}" + (f" (of these, {', '.join(map(str, fits))})" if fits else "")
            raise RecipeError(str(path), field, f"ctx {max(ctxs)} needs at least {need} tokens of text "
                              f"(llama-perplexity evaluates 2·ctx at least); the corpus {corpus.label} is "
                              f"{tokens} tokens for this model: {what}, or a longer corpus")
        size = corpus.path.stat().st_size if tokens is None and corpus.path.exists() else None
        if size is not None and size + 1 < need:
            raise RecipeError(str(path), field, f"ctx {max(ctxs)} needs at least {need} tokens of text; the "
                              f"corpus {corpus.label} is {size} bytes, fewer tokens than that whatever the "
                              f"vocabulary: use ctx ≤ {(size + 1) // 2}, or a longer corpus")


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
    for t in r.tasks:
        if t.path is not None:
            hub.task_file(t, rdir)


def check_helpers(r: recipe.Recipe, tc: Toolchain) -> None:
    """The helper tools a recipe's cells need are in the toolchain (a build of the user's may lack them)."""
    if r.generate.prompts and not (tc.has("llama-completion") and tc.has("llama-tokenize")):
        raise ToolchainError(f"generate: needs llama-completion and llama-tokenize beside the tools in {tc.bin_dir}: "
                             "`quantsweep toolchain build` builds them, or build those targets in your tree")


def inputs(recipe_path: str | Path, ws: Workspace, tc: Toolchain, fetch: bool = True) -> plan.PlanInputs:
    path = Path(recipe_path)
    r = recipe.load(path)
    check_toolchain_types(r, path, tc)
    check_helpers(r, tc)
    rdir = path.resolve().parent
    src = gguf_info.check_file(hub.fetch_model(r.model, rdir, local_only=not fetch))
    memo = cache_root() / "file-hashes.json"
    sha = sha256_file(src, memo)
    info = gguf_info.read(src, cache_root() / "gguf-info", sha)
    root_was, corpora_was = ws.root.exists(), ws.corpora.exists()
    corpora_were = set(ws.corpora.glob("*")) if corpora_was else set()
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
    task_files = {t.name: hub.task_file(t, rdir, local_only=not fetch) for t in r.tasks}
    texts = [corpus, *(c for c in im_inputs.values() if isinstance(c, hub.Corpus))]
    tokens = {c.sha256: n for c in texts if (n := corpus_tokens(tc, src, sha, c)) is not None}
    inp = plan.PlanInputs(recipe=r, source_path=src, source_sha=sha, source_info=info,
                          corpus=corpus, toolchain=tc.identity(), host=host_info(tc),
                          imatrix_inputs=im_inputs, corpus_tokens=tokens, bases=bases_on_hand(ws),
                          task_files=task_files,
                          disk_free=shutil.disk_usage(next(p for p in (ws.root, *ws.root.parents) if p.exists())).free)
    try:
        check_trained_context(inp, path)
        check_corpus_length(inp, path)
        check_task_lengths(inp, path, tc)
    except RecipeError:  # bad input writes nothing: the corpora written for the count go again
        if not root_was:
            shutil.rmtree(ws.root, ignore_errors=True)
        elif not corpora_was:
            shutil.rmtree(ws.corpora, ignore_errors=True)
        else:
            for f in set(ws.corpora.glob("*")) - corpora_were:
                f.unlink(missing_ok=True)
        raise
    return inp


CHUNKS_ARG_RE = re.compile(r"--chunks (\d+)")


def bases_on_hand(ws: Workspace) -> tuple[plan.BaseOnHand, ...]:
    """The reference logits this workspace holds (recorded done, their file there): a recipe that asks
    for fewer chunks of the same corpus and settings is served from one of them, with no reference run."""
    from orchestrator.results.store import Store

    if not ws.store_path.is_file():
        return ()
    store = Store.read_only(ws.store_path)
    try:
        done = store.done_jobs("base")
    finally:
        store.close()
    out = []
    for j in done:
        r = j["result"]
        if not j["artifact"] or "n_chunks" not in r or not ws.resolve(j["artifact"]).is_file():
            continue
        asked = CHUNKS_ARG_RE.search(j["argv"] or "")
        out.append(plan.BaseOnHand(j["key"], int(asked.group(1)) if asked else None, r["n_chunks"], r["n_ctx"],
                                   tuple(r.get("ppl_chunks", ()))))
    return tuple(out)
