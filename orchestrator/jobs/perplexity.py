"""The quality measurements, both by llama-perplexity: the reference logits of each context (written once
by the reference model over the corpus) and each cell's KL divergence from them."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from orchestrator.jobs.kind import (Kind, Params, Parts, PlanState, architecture, device_resources, model_footprint,
                                    model_ref)
from orchestrator.plan import memory
from orchestrator.jobs.spec import Judge, JobSpec, Ref, Threads
from orchestrator.plan.graph import Job, Plan, PlanInputs, content_key
from orchestrator.tools import perplexity as tp


class BaseParams(Params):
    model: str
    ctx: int
    chunks: int | None
    n_vocab: int
    n_chunk: int             # the chunks the run will produce (the corpus's tokens over ctx, at most `chunks`)
    logits_bytes: int        # the file it writes, exactly

    def disk_bytes(self) -> int:
        return self.logits_bytes


class KldParams(Params):
    model: str
    base: str
    cache_k: str
    cache_v: str
    ctx: int
    served: int = 0           # the first chunks of a larger base it reads, through a pipe (0: the whole file)
    precision: float | None = None  # chunks: auto — it stops once its KLD ± is at most this fraction of the mean
    stream: int = 0           # its reference streamed: the reference run's --chunks (-1: the whole corpus)
    reference: str = ""       # … and its model


class Base(Kind):
    name, title, tool, priority, guess_s = "base", "reference logits", "llama-perplexity", 1, 120.0
    params = BaseParams
    makes = "logits"

    def plan(self, st: PlanState) -> None:
        inp = st.inp
        ev, n_vocab = inp.recipe.evaluation, inp.source_info.n_vocab
        st.files[inp.corpus.sha256] = inp.corpus.path
        for ctx in ev.contexts:
            def key_of(chunks: int | None, ctx=ctx) -> str:
                return content_key("base", reference=st.reference, corpus=inp.corpus.sha256, ctx=ctx, chunks=chunks,
                                   batch=ev.batch, ubatch=ev.ubatch, flash_attn=ev.flash_attn,
                                   gpu_layers=ev.gpu_layers, extra=ev.extra_args, toolchain=inp.toolchain)
            key, n_chunk, label = key_of(ev.chunk_cap), n_chunks(inp, ctx), f"reference logits c={ctx}"
            held = larger_base(inp.bases, key, key_of, ctx, ev.chunk_cap)
            size = tp.logits_size(ctx, n_vocab, n_chunk)
            why = None if held else stream_reason(ev, size, inp.disk_free, any(b.key == key for b in inp.bases))
            if why:  # no file: each KLD run of this ctx reads the reference run's logits as they are made
                st.base_keys[ctx] = key
                st.streamed[ctx] = {"why": why, "chunks": n_chunk, "bytes": size, "chunks_arg": ev.chunk_cap}
                continue
            if held is not None:  # the first chunks of logits made for more: served, no reference run
                st.served[ctx] = held
                key, n_chunk, label = held.key, held.n_chunk, f"{label} ({held.n_chunk} chunks on hand)"
            st.base_keys[ctx] = key
            st.add(Job(key, self.name, label, st.deps(st.reference), BaseParams(
                model=st.reference, ctx=ctx, chunks=held.chunks if held else ev.chunk_cap, n_vocab=n_vocab,
                n_chunk=n_chunk, logits_bytes=tp.logits_size(ctx, n_vocab, n_chunk))))

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: BaseParams = job.params
        ev = plan.inputs.recipe.evaluation
        argv = tp.base_argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.model),
                            Ref(ref="input", key=plan.inputs.corpus.sha256), Ref(ref="output"), ctx=p.ctx,
                            chunks=p.chunks, batch=ev.batch, ubatch=ev.ubatch, flash_attn=ev.flash_attn,
                            gpu_layers=ev.gpu_layers, threads=ev.threads or threads.device, extra=ev.extra_args)
        return Parts(argv, device_resources(plan, upstream, p.model, "f16", "f16", p.ctx, ev, threads.device_hold),
                     ev.timeout_minutes, Judge(n_vocab=p.n_vocab, ctx=p.ctx))

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert out is not None and judge.n_vocab is not None and judge.ctx is not None, "set by parts()"
        return tp.judge_base(res.rc, res.stdout, res.stderr, out, judge.n_vocab, judge.ctx)

    def host_bytes(self, job: Job, plan: Plan, upstream: dict[str, dict], on_host: bool) -> int:
        return host_need(job, plan, upstream, on_host, "f16", "f16", writes_base=True)


class Kld(Kind):
    name, title, tool, priority, guess_s = "kld", "kld", "llama-perplexity", 4, 90.0
    params = KldParams
    measures = per_context = True

    def plan(self, st: PlanState) -> None:
        inp = st.inp
        ev = inp.recipe.evaluation
        for cell in st.cells:
            mk, base = st.model_keys[cell.weights], st.base_keys[cell.ctx]
            held, streamed = st.served.get(cell.ctx), st.streamed.get(cell.ctx)
            # a part of a base is another measurement; so is one that stops at a precision
            served = {"served": ev.chunk_cap} if held else {}
            adaptive = {"precision": ev.target} if ev.adaptive else {}
            key = content_key("kld", model=mk, base=base, cache_k=cell.type_k, cache_v=cell.type_v, batch=ev.batch,
                              ubatch=ev.ubatch, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                              extra=ev.extra_args, toolchain=inp.toolchain, **served, **adaptive)
            # streamed: the same measurement as against the file (the same key), made with the reference run
            st.add(Job(key, self.name, f"kld {cell}", st.deps(mk, st.reference if streamed else base), KldParams(
                model=mk, base=base, cache_k=cell.type_k, cache_v=cell.type_v, ctx=cell.ctx,
                served=(ev.chunk_cap or 0) if held else 0, precision=ev.target,
                stream=streamed["chunks_arg"] if streamed and streamed["chunks_arg"] else -1 if streamed else 0,
                reference=st.reference if streamed else ""), cell), once=False)

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: KldParams = job.params
        ev = plan.inputs.recipe.evaluation
        if p.stream:
            return self._streamed(p, plan, upstream, threads)
        base = upstream.get(p.base, {})
        first = pilot_chunks(p.served or base.get("n_chunks", 0)) if p.precision else p.served
        argv = tp.kld_argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.model),
                           Ref(ref="logits", key=p.base, count=first),
                           ctx=p.ctx, batch=ev.batch, ubatch=ev.ubatch, cache_k=p.cache_k, cache_v=p.cache_v,
                           flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers, threads=ev.threads or threads.device,
                           extra=ev.extra_args)
        res = device_resources(plan, upstream, p.model, p.cache_k, p.cache_v, p.ctx, ev, threads.device_hold)
        # the reference PPL the run must print: as the file holds it where recorded (to its digits), else the
        # reference run's own figure (stores before 0.2: to 1e-3; a part of the file: unchecked); None only
        # in a preview, before the base has run
        read = first if p.precision else p.served or base.get("n_chunks", 0)
        held = ppl_after(base, read)
        judge = Judge(base_ppl=held if held is not None or read != base.get("n_chunks") else base.get("ppl_base"),
                      ppl_from_file=held is not None, ctx=p.ctx, chunks=read if p.precision or p.served else None)
        if p.precision:  # a pilot first; then as many chunks as its ± says the precision needs
            judge = judge.model_copy(update={"precision": p.precision, "max_chunks": p.served or base.get("n_chunks"),
                                             "ppl_chunks": base.get("ppl_chunks", [])})
        return Parts(argv, res, ev.timeout_minutes, judge)

    def _streamed(self, p: KldParams, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        """The KLD run reading a pipe, and the reference run writing the other (its `feed`): both resident."""
        ev = plan.inputs.recipe.evaluation
        t = ev.threads or threads.device
        argv = tp.kld_argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.model), Ref(ref="stream", key="sink"),
                           ctx=p.ctx, batch=ev.batch, ubatch=ev.ubatch, cache_k=p.cache_k, cache_v=p.cache_v,
                           flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers, threads=t, extra=ev.extra_args)
        feed = tp.base_argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.reference),
                            Ref(ref="input", key=plan.inputs.corpus.sha256), Ref(ref="stream", key="source"),
                            ctx=p.ctx, chunks=p.stream if p.stream > 0 else None, batch=ev.batch, ubatch=ev.ubatch,
                            flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers, threads=t, extra=ev.extra_args)
        reader = device_resources(plan, upstream, p.model, p.cache_k, p.cache_v, p.ctx, ev, threads.device_hold)
        writer = device_resources(plan, upstream, p.reference, "f16", "f16", p.ctx, ev, threads.device_hold)
        res = reader.model_copy(update={"device_bytes": reader.device_bytes + writer.device_bytes,
                                        "feed_bytes": writer.device_bytes,
                                        "exclusive": reader.exclusive or writer.exclusive})
        return Parts(argv, res, ev.timeout_minutes, Judge(ctx=p.ctx, ppl_from_file=True), feed=feed)

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert judge.base_ppl is not None or judge.chunks, "a KLD job runs once its reference logits are recorded"
        stats = tp.judge_kld(res.rc, res.stdout, res.stderr, judge.base_ppl, judge.chunks,
                             tolerance=1e-5 if judge.ppl_from_file else 1e-3)
        if judge.ctx is not None and stats.get("n_chunks"):
            stats["n_tokens"] = stats["n_chunks"] * tp.scored_per_chunk(judge.ctx)
        return stats

    def next_run(self, spec: JobSpec, result: dict) -> JobSpec | None:
        """chunks: auto — the run over more chunks that its ± so far says reaches the precision (the ± of
        a mean shrinks as 1/√tokens; 15 % more for the estimate's own noise), or None: precise, or every
        chunk the reference holds was used."""
        j = spec.judge
        n, cap = result.get("n_chunks") or 0, j.max_chunks or 0
        if not j.precision or n >= cap:
            return None
        rel = result["kld_mean_err"] / result["kld_mean"] if result.get("kld_mean") else math.inf
        if rel <= j.precision:
            return None
        want = cap if math.isinf(rel) else min(cap, max(n + 1, math.ceil(n * (rel / j.precision) ** 2 * 1.15)))
        argv = [a.model_copy(update={"count": want}) if isinstance(a, Ref) and a.ref == "logits" else a
                for a in spec.argv]
        ppl = j.ppl_chunks[want - 1] if len(j.ppl_chunks) >= want else None
        return spec.model_copy(update={"argv": argv, "judge": j.model_copy(update={"chunks": want, "base_ppl": ppl})})

    def merge(self, runs: list[dict]) -> dict:
        """The last run's statistics (exact over its chunks), with what every run evaluated."""
        last = dict(runs[-1])
        if len(runs) > 1 or "n_tokens" in last:
            last["tokens_evaluated"] = sum(r.get("n_tokens", 0) for r in runs)
            last["chunks_runs"] = [r.get("n_chunks") for r in runs]
        return last

    def host_bytes(self, job: Job, plan: Plan, upstream: dict[str, dict], on_host: bool) -> int:
        p: KldParams = job.params
        reader = host_need(job, plan, upstream, on_host, p.cache_k, p.cache_v, writes_base=False)
        return reader + self.feed_host_bytes(job, plan, upstream, on_host)

    def feed_host_bytes(self, job: Job, plan: Plan, upstream: dict[str, dict], on_host: bool) -> int:
        p: KldParams = job.params
        if not p.stream:
            return 0
        writer = dataclasses.replace(job, params=p.model_copy(update={"model": p.reference}))
        return host_need(writer, plan, upstream, on_host, "f16", "f16", writes_base=True)

    def row_extra(self, job: Job, recorded) -> dict:
        # the exact chunk count: those served, else the reference logits file's (its header)
        return {"n_chunks": job.params.served or (recorded(job.params.base) or {}).get("result", {}).get("n_chunks")}


def n_chunks(inp: PlanInputs, ctx: int) -> int:
    """Chunks the base run will produce: the corpus's tokens (counted at plan time; else estimated at
    ≈ 4 characters a token) over ctx, as llama-perplexity cuts them."""
    tokens = inp.corpus_tokens.get(inp.corpus.sha256) or inp.corpus.n_chars // 4
    n = max(1, tokens // ctx)
    cap = inp.recipe.evaluation.chunk_cap
    return min(n, cap) if cap else n


BASE, KLD = Base(), Kld()


def larger_base(bases, key: str, key_of, ctx: int, chunks: int | None):
    """A base on hand that holds the first `chunks` this recipe asks, made with its corpus and settings
    for more chunks (the fewest such), when none of its own is: None where its own is, or none fits."""
    if not chunks or any(b.key == key for b in bases):
        return None
    fits = [b for b in bases if b.n_ctx == ctx and b.n_chunk > chunks and key_of(b.chunks) == b.key]
    return min(fits, key=lambda b: b.n_chunk, default=None)


def host_need(job: Job, plan: Plan, upstream: dict, on_host: bool, type_k: str, type_v: str, *,
              writes_base: bool) -> int:
    arch, ev = architecture(plan), plan.inputs.recipe.evaluation
    if arch is None:
        return 0
    cpu = on_host or ev.gpu_layers == 0
    fp = model_footprint(plan, upstream, job.params.model, type_k, type_v, job.params.ctx, ev.ubatch) if cpu else None
    return memory.host_bytes(arch, job.params.ctx, ev.batch, writes_base=writes_base, on_host=fp)


PILOT = 8  # a pilot's share of the chunks on hand: 1/8, at least 4


def pilot_chunks(available: int) -> int:
    """chunks: auto — the first run's chunks: enough for its ± to say how many the precision needs."""
    return max(1, min(available, max(4, math.ceil(available / PILOT))))


def ppl_after(base: dict, n: int) -> float | None:
    """The reference PPL over the first n chunks, as its file holds it (None: not recorded, a store
    before 0.2)."""
    running = base.get("ppl_chunks", [])
    return running[n - 1] if 0 < n <= len(running) else None


def stream_reason(ev, size: int, free: int, on_hand: bool) -> str | None:
    """Why a context's reference is streamed rather than written to a file, or None: it is written."""
    if ev.logits == "stream":
        return "logits: stream"
    if ev.logits == "file" or on_hand or ev.adaptive:
        return None
    cap = ev.max_logits_bytes
    if cap is not None and size > cap:
        return f"the file would be {memory.gib(size, 1)}, over max_logits {memory.gib(cap, 1)}"
    if free and size > 0.9 * free:
        return f"the file would be {memory.gib(size, 1)}, with {memory.gib(free, 1)} free"
    return None
