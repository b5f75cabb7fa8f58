"""How much memory a (weights, K type, V type, context) configuration needs.

Every attention layer keeps, per cached token, `n_head_kv × head_size_k` values of K and
`n_head_kv × head_size_v` values of V. A cache type stores values in blocks (q8_0: 32 values in
34 bytes), so bytes per token follow from the GGUF's architecture and the two types alone.
llama.cpp pads the context to a multiple of 256 cells; a sliding-window layer keeps only
min(ctx, n_swa + n_ubatch) cells, padded to 256 (src/llama-kv-cache-iswa.cpp). The K/V part is
checked against the sizes llama.cpp itself reports (tests/integration/test_memory.py).

A configuration's memory = the GGUF's tensor data + the K/V cache + a compute allowance
(llama.cpp's compute buffer at one micro-batch: logits and the widest activations, 4 bytes each,
plus the f16 attention mask over the whole context; flash attention on). Checked against
llama.cpp's own per-device account on CPU and CUDA (reports/h100/memory.md). Runtime overhead
outside llama.cpp's buffers (the CUDA context: ~610 MiB measured on an H100 with CUDA 13, other
programs on the card) is the caller's `reserve`.
"""

from __future__ import annotations

import functools

import re
from dataclasses import dataclass

from orchestrator.errors import UsageError

# values per block, bytes per block (ggml's type traits)
CACHE_BLOCKS = {"f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q8_0": (32, 34), "q5_1": (32, 24),
                "q5_0": (32, 22), "q4_1": (32, 20), "q4_0": (32, 18), "iq4_nl": (32, 18)}
PAD = 256
UBATCH = 512

# sliding-window defaults of architectures whose GGUF may leave them out: (pattern, window).
# A pattern n makes layer il sliding unless il % n == n - 1 (src/models/<arch>.cpp, load_swa_pattern).
SWA_DEFAULTS = {"gemma2": (2, 4096), "gemma3": (6, None), "cohere2": (4, None), "gpt-oss": (2, None),
                "llama4": (4, 8192), "exaone4": (4, 4096), "olmo2": (4, None)}
SWA_DISABLED = {"phi3"}  # llama.cpp ignores the window these GGUFs declare


class MemoryModelError(UsageError):
    """The architecture is outside what the memory model knows how to count."""


def bytes_per_value(cache_type: str) -> float:
    values, nbytes = CACHE_BLOCKS[cache_type]
    return nbytes / values


def row_bytes(cache_type: str, n_values: int) -> int:
    values, nbytes = CACHE_BLOCKS[cache_type]
    return -(-n_values // values) * nbytes


def pad(n: int, to: int = PAD) -> int:
    return -(-n // to) * to


def _per_layer(v, n_layer: int) -> list[int]:
    if isinstance(v, list):
        if len(v) != n_layer:
            raise MemoryModelError(f"per-layer value has {len(v)} entries for {n_layer} layers")
        return [int(x) for x in v]
    return [int(v)] * n_layer


@dataclass(frozen=True)
class Architecture:
    name: str
    k_values: tuple[int, ...]  # K values per cached token, per layer (0: the layer caches nothing)
    v_values: tuple[int, ...]
    swa: tuple[bool, ...]      # sliding-window layers
    n_swa: int
    n_vocab: int
    n_embd: int
    n_ff: int
    n_ctx_train: int | None

    @property
    def n_layer(self) -> int:
        return len(self.k_values)

    @classmethod
    def from_hparams(cls, arch: str, hp: dict, n_vocab: int) -> Architecture:
        """From the `<arch>.*` GGUF keys (without the prefix), as gguf_info records them."""
        if "attention.kv_lora_rank" in hp:
            raise MemoryModelError(f"{arch}: multi-head latent attention (kv_lora_rank) is not modelled")
        if any(k.startswith("ssm.") or k.startswith("wkv.") for k in hp):
            raise MemoryModelError(f"{arch}: recurrent layers (ssm/wkv state) are not modelled")
        try:
            n_layer = int(hp["block_count"])
            n_embd = int(hp["embedding_length"])
            n_head = _per_layer(hp["attention.head_count"], n_layer)
        except KeyError as exc:
            raise MemoryModelError(f"{arch}: the GGUF has no {exc.args[0]} key") from None
        n_head_kv = _per_layer(hp.get("attention.head_count_kv", n_head), n_layer)
        first = next((h for h in n_head if h), 1)
        head_k = int(hp.get("attention.key_length") or n_embd // first)
        head_v = int(hp.get("attention.value_length") or n_embd // first)
        swa = _swa_layers(arch, hp, n_layer)
        n_swa = int(hp.get("attention.sliding_window") or SWA_DEFAULTS.get(arch, (0, 0))[1] or 0)
        if n_swa == 0:
            swa = [False] * n_layer
        head_k_swa = int(hp.get("attention.key_length_swa") or head_k)
        head_v_swa = int(hp.get("attention.value_length_swa") or head_v)
        k_values = tuple(h * (head_k_swa if s else head_k) for h, s in zip(n_head_kv, swa))
        v_values = tuple(h * (head_v_swa if s else head_v) for h, s in zip(n_head_kv, swa))
        n_ff = hp.get("feed_forward_length") or 4 * n_embd
        n_ff = max(n_ff) if isinstance(n_ff, list) else int(n_ff)
        ctx_train = hp.get("context_length")
        return cls(name=arch, k_values=k_values, v_values=v_values, swa=tuple(swa), n_swa=n_swa,
                   n_vocab=int(n_vocab), n_embd=n_embd, n_ff=n_ff,
                   n_ctx_train=int(ctx_train) if ctx_train else None)

    def cells(self, ctx: int, n_ubatch: int = UBATCH, n_seq: int = 1) -> tuple[int, int]:
        """K/V cells llama.cpp allocates for full-attention and for sliding-window layers."""
        base = pad(ctx)
        return base, pad(min(base, self.n_swa * n_seq + n_ubatch)) if self.n_swa else base

    def kv_bytes(self, type_k: str, type_v: str, ctx: int, n_ubatch: int = UBATCH) -> tuple[int, int]:
        """(K bytes, V bytes) of the cache at this context (memoized: a 10,000-cell table asks for a
        handful of distinct ones, 10,000 times)."""
        return _kv_bytes(self, type_k, type_v, ctx, n_ubatch)

    def _kv_bytes(self, type_k: str, type_v: str, ctx: int, n_ubatch: int) -> tuple[int, int]:
        base, swa = self.cells(ctx, n_ubatch)
        k = v = 0
        for kv, vv, s in zip(self.k_values, self.v_values, self.swa):
            n = swa if s else base
            k += row_bytes(type_k, kv) * n
            v += row_bytes(type_v, vv) * n
        return k, v

    def kv_bytes_per_token(self, type_k: str, type_v: str) -> float:
        """Full-attention layers only: what each further token of context costs."""
        return sum(row_bytes(type_k, k) + row_bytes(type_v, v)
                   for k, v, s in zip(self.k_values, self.v_values, self.swa) if not s)

    def compute_bytes(self, ctx: int, n_ubatch: int = UBATCH) -> int:
        """Allowance for llama.cpp's compute buffer (flash attention on): logits and activations,
        and the f16 mask of one micro-batch against every cached cell."""
        return 4 * n_ubatch * (self.n_vocab + 2 * self.n_ff + 4 * self.n_embd) + 2 * n_ubatch * pad(ctx)


def _swa_layers(arch: str, hp: dict, n_layer: int) -> list[bool]:
    if arch in SWA_DISABLED:
        return [False] * n_layer
    pattern = hp.get("attention.sliding_window_pattern")
    if isinstance(pattern, list):
        return [bool(x) for x in _per_layer(pattern, n_layer)]
    n = int(pattern) if pattern else SWA_DEFAULTS.get(arch, (0, 0))[0]
    if not n:
        # a window without a known pattern: every layer counted as full attention (an upper bound)
        return [False] * n_layer
    return [il % n < n - 1 for il in range(n_layer)]


@dataclass(frozen=True)
class Footprint:
    weights: int
    k: int
    v: int
    compute: int

    @property
    def kv(self) -> int:
        return self.k + self.v

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.compute


def footprint(arch: Architecture, weights_bytes: int, type_k: str, type_v: str, ctx: int,
              n_ubatch: int = UBATCH) -> Footprint:
    k, v = arch.kv_bytes(type_k, type_v, ctx, n_ubatch)
    return Footprint(weights=int(weights_bytes), k=k, v=v, compute=arch.compute_bytes(ctx, n_ubatch))


def host_bytes(arch: Architecture, ctx: int, batch: int, *, writes_base: bool, on_host: Footprint | None) -> int:
    """What a llama-perplexity run over the reference logits holds in host memory (tools/perplexity.cpp):
    the output buffer of a batch (min(batch, ctx) rows of n_vocab floats), the scored half of a chunk's
    logits as floats when a chunk takes several batches, and its 16-bit log-probs (a whole chunk's when it
    writes the base file, the scored half when a KLD run reads them); `on_host`: the model's footprint
    when it runs on the CPU (weights, K/V, compute), else nothing. Checked against the tools' peak RSS
    (reports/long-context.md)."""
    nv = 2 * ((arch.n_vocab + 1) // 2) + 4
    scored = ctx - 1 - ctx // 2
    logits = scored * arch.n_vocab * 4 if ctx > batch else 0
    log_probs = (ctx if writes_base else scored) * nv * 2
    out = min(batch, ctx) * arch.n_vocab * 4
    return out + logits + log_probs + (on_host.total if on_host is not None else 0)


def max_ctx(arch: Architecture, weights_bytes: int, type_k: str, type_v: str, budget: int,
            n_ubatch: int = UBATCH, limit: int | None = None) -> int:
    """The longest context (a multiple of 256, at most `limit`) whose footprint fits `budget`; 0 if none."""
    def fits(c: int) -> bool:
        return footprint(arch, weights_bytes, type_k, type_v, c, n_ubatch).total <= budget

    hi = (limit or arch.n_ctx_train or 1 << 20) // PAD
    if hi < 1 or not fits(PAD):
        return 0
    lo = 1
    while lo < hi:  # largest n in [1, hi] with fits(n * PAD)
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid * PAD) else (lo, mid - 1)
    return lo * PAD


SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(b|kb|kib|mb|mib|gb|gib|tb|tib|k|m|g|t)?\s*$", re.I)
# a bare letter (24G) is binary, as a card sold as "24 GB" has 24 GiB; "GB" is SI, as written
UNITS = {"b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30,
         "tb": 10**12, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str, what: str = "--vram") -> int:
    """'24GiB', '24G', '24 GB' (SI), '16000MiB' → bytes; a bare number is GiB."""
    m = SIZE_RE.match(str(text))
    if not m:
        raise UsageError(f"{what} {text!r}: give a size such as 24GiB, 23.5GiB, 16000MiB or 24GB")
    return int(float(m.group(1)) * UNITS[(m.group(2) or "gib").lower()])


def gib(n: float, mib_digits: int = 0) -> str:
    """Bytes for people: GiB with two decimals, MiB below one GiB (with `mib_digits` decimals)."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.{mib_digits}f} MiB"


@functools.lru_cache(maxsize=4096)
def _kv_bytes(arch: Architecture, type_k: str, type_v: str, ctx: int, n_ubatch: int) -> tuple[int, int]:
    return arch._kv_bytes(type_k, type_v, ctx, n_ubatch)
