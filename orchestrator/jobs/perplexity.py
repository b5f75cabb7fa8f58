"""The quality measurements, both by llama-perplexity: the reference logits of each context (written once
by the reference model over the corpus) and each cell's KL divergence from them."""

from __future__ import annotations

from pathlib import Path

from orchestrator.jobs.kind import Kind, Params, Parts, PlanState, device_resources, model_ref
from orchestrator.jobs.spec import Judge, Ref, Threads
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


class Base(Kind):
    name, title, tool, priority, guess_s = "base", "reference logits", "llama-perplexity", 1, 120.0
    params = BaseParams
    makes = "logits"

    def plan(self, st: PlanState) -> None:
        inp = st.inp
        ev, n_vocab = inp.recipe.evaluation, inp.source_info.n_vocab
        st.files[inp.corpus.sha256] = inp.corpus.path
        for ctx in ev.contexts:
            key = content_key("base", reference=st.reference, corpus=inp.corpus.sha256, ctx=ctx, chunks=ev.chunks,
                              batch=ev.batch, ubatch=ev.ubatch, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                              extra=ev.extra_args, toolchain=inp.toolchain)
            st.base_keys[ctx] = key
            n_chunk = n_chunks(inp, ctx)
            st.add(Job(key, self.name, f"reference logits c={ctx}", st.deps(st.reference), BaseParams(
                model=st.reference, ctx=ctx, chunks=ev.chunks, n_vocab=n_vocab, n_chunk=n_chunk,
                logits_bytes=tp.logits_size(ctx, n_vocab, n_chunk))))

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


class Kld(Kind):
    name, title, tool, priority, guess_s = "kld", "kld", "llama-perplexity", 4, 90.0
    params = KldParams
    measures = per_context = True

    def plan(self, st: PlanState) -> None:
        inp = st.inp
        ev = inp.recipe.evaluation
        for cell in st.cells:
            mk, base = st.model_keys[cell.weights], st.base_keys[cell.ctx]
            key = content_key("kld", model=mk, base=base, cache_k=cell.type_k, cache_v=cell.type_v, batch=ev.batch,
                              ubatch=ev.ubatch, flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers,
                              extra=ev.extra_args, toolchain=inp.toolchain)
            st.add(Job(key, self.name, f"kld {cell}", st.deps(mk, base), KldParams(
                model=mk, base=base, cache_k=cell.type_k, cache_v=cell.type_v, ctx=cell.ctx), cell), once=False)

    def parts(self, job: Job, plan: Plan, upstream: dict[str, dict], threads: Threads) -> Parts:
        p: KldParams = job.params
        ev = plan.inputs.recipe.evaluation
        argv = tp.kld_argv(Ref(ref="tool", key=self.tool), model_ref(plan, p.model), Ref(ref="logits", key=p.base),
                           ctx=p.ctx, batch=ev.batch, ubatch=ev.ubatch, cache_k=p.cache_k, cache_v=p.cache_v,
                           flash_attn=ev.flash_attn, gpu_layers=ev.gpu_layers, threads=ev.threads or threads.device,
                           extra=ev.extra_args)
        res = device_resources(plan, upstream, p.model, p.cache_k, p.cache_v, p.ctx, ev, threads.device_hold)
        # a KLD run must report the reference run's PPL (None only in a preview, before the base has run)
        return Parts(argv, res, ev.timeout_minutes, Judge(base_ppl=upstream.get(p.base, {}).get("ppl_base")))

    def judge(self, judge: Judge, res, out: Path | None) -> dict:
        assert judge.base_ppl is not None, "a KLD job runs once its reference logits are recorded"
        return tp.judge_kld(res.rc, res.stdout, res.stderr, judge.base_ppl)

    def row_extra(self, job: Job, recorded) -> dict:
        # the exact chunk count: from the reference logits file's header
        return {"n_chunks": (recorded(job.params.base) or {}).get("result", {}).get("n_chunks")}


def n_chunks(inp: PlanInputs, ctx: int) -> int:
    """Chunks the base run will produce: the corpus's tokens (counted at plan time; else estimated at
    ≈ 4 characters a token) over ctx, as llama-perplexity cuts them."""
    tokens = inp.corpus_tokens.get(inp.corpus.sha256) or inp.corpus.n_chars // 4
    n = max(1, tokens // ctx)
    return min(n, inp.recipe.evaluation.chunks) if inp.recipe.evaluation.chunks else n


BASE, KLD = Base(), Kld()
