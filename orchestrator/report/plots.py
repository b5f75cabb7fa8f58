"""The report's figures (matplotlib, PNG and SVG): quality against size, speed and K/V memory, and
the per-token distributions. Inputs are `analysis.cells` frames; nothing is measured here."""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import matplotlib
import pandas as pd

from orchestrator.report import analysis
from orchestrator.plan import memory
from orchestrator.files import atomic_path

MARKERS = "osD^vP*Xh<>p"
SHOWN_MAX = 12  # weights labels one figure draws and names; more are thinned to the Pareto frontier
KLD_PCT = [("1%", "kld_p1"), ("5%", "kld_p5"), ("10%", "kld_p10"), ("median", "kld_median"), ("90%", "kld_p90"),
           ("95%", "kld_p95"), ("99%", "kld_p99"), ("99.9%", "kld_p99_9"), ("max", "kld_max")]
DP_PCT = [("min", "dp_min"), ("0.1%", "dp_p0_1"), ("1%", "dp_p1"), ("5%", "dp_p5"), ("10%", "dp_p10"),
          ("25%", "dp_p25"), ("median", "dp_median"), ("75%", "dp_p75"), ("90%", "dp_p90"), ("95%", "dp_p95"),
          ("99%", "dp_p99"), ("99.9%", "dp_p99_9"), ("max", "dp_max")]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.hashsalt": "quantsweep", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def frame(fig):
    """The box (inches) a figure is saved in: the tight box of everything drawn, and every legend and
    label, which the tight box alone leaves out when a second legend was added with `ax.add_artist`."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    inches = fig.dpi_scale_trans.inverted()
    boxes = [fig.get_tightbbox(renderer)]
    boxes += [a.get_window_extent(renderer).transformed(inches) for a in labels(fig)]
    return Bbox.union(boxes).padded(matplotlib.rcParams["savefig.pad_inches"])


def labels(fig) -> list:
    """What a reader must see whole: every legend, title, axis label and annotation of the figure."""
    from matplotlib.legend import Legend

    out = list(fig.legends) + list(fig.texts)  # the suptitle is one of the figure's texts
    for ax in fig.axes:
        out += [a for a in ax.get_children() if isinstance(a, Legend)] + list(ax.texts)  # annotations
        out += [ax.title, ax.xaxis.label, ax.yaxis.label]
    return [a for a in out if a.get_visible() and (not hasattr(a, "get_text") or a.get_text())]


def outside(fig, box) -> list:
    """The labels of `fig` not wholly inside `box` (inches): what a saved image would cut."""
    renderer = fig.canvas.get_renderer()
    inches = fig.dpi_scale_trans.inverted()
    eps = 1e-6
    cut = []
    for a in labels(fig):
        b = a.get_window_extent(renderer).transformed(inches)
        if b.x0 < box.x0 - eps or b.y0 < box.y0 - eps or b.x1 > box.x1 + eps or b.y1 > box.y1 + eps:
            cut.append(a)
    return cut


def _save(fig, out: Path, stem: str) -> list[Path]:
    """PNG and SVG cropped to one box (`frame`), measured without the draw that bbox_inches="tight" makes
    for each format: with no layout engine, nothing a draw does moves an artist (the same bytes, a third
    fewer draws)."""
    if fig.get_layout_engine() is not None:
        fig.draw_without_rendering()
    box = frame(fig)
    paths = []
    # zlib level 3, not PIL's 6: the same pixels in a file ~4 % larger, written in two thirds of the time
    for ext, kw in (("png", {"dpi": 150, "pil_kwargs": {"compress_level": 3}}), ("svg", {"metadata": {"Date": None}})):
        path = out / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=ext, bbox_inches=box, **kw)
        paths.append(path)
    return paths


def _pairs(k: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(k.type_k, k.type_v)))


def _subtitle(k: pd.DataFrame, note: str = "") -> str:
    r = k.iloc[0]
    ctx = ", ".join(str(int(c)) for c in sorted(k.ctx.unique()))
    text = f"{r.model_name}: KLD vs {r.reference} reference, {r.corpus}, ctx {ctx}, {r.toolchain_backends}"
    return text + (f"\n{note}" if note else "")


def readable(k: pd.DataFrame, most: int = SHOWN_MAX) -> tuple[pd.DataFrame, str]:
    """The cells of at most `most` weights labels, so a figure stays legible: all of them when there
    are few; else those on the size/KLD Pareto frontier, thinned evenly along it when it is longer.
    The note says what was left out (the tables and cells.csv keep everything)."""
    labels = list(dict.fromkeys(k.weights))
    if len(labels) <= most:
        return k, ""
    sized = k.file_bytes.notna().to_numpy()  # three columns, not copies of the whole frame
    weights, size, kld = (k[c].to_numpy()[sized] for c in ("weights", "file_bytes", "kld_mean"))
    front = sorted((i for i, on in enumerate(analysis.pareto(list(size), list(kld))) if on), key=lambda i: size[i])
    pick = list(dict.fromkeys(weights[i] for i in front)) or labels
    if len(pick) > most:
        pick = [pick[round(i * (len(pick) - 1) / (most - 1))] for i in range(most)]
    return (k[k.weights.isin(pick)],
            f"showing {len(pick)} of {len(labels)} weights quants: those on the size/KLD Pareto frontier")


def weights_labels(k: pd.DataFrame) -> dict[str, str]:
    """Each weights label, with what its bytes really are when llama-quantize fell back to other types
    for some tensors: 'Q2_K (77 % Q8_0, 90 fallbacks)' explains a point far right of its name's BPW."""
    from orchestrator.report.tables import is_missing, mix

    out = {}
    first = k.drop_duplicates("weights")  # each label's first row, as records (not a Series of ~100 columns)
    for r in analysis.records(first, ["weights", "fallback_tensors", "tensor_mix_json"]):
        w, n, shares = r.weights, r.get("fallback_tensors"), mix(r.get("tensor_mix_json"), top=1)
        if shares and not is_missing(n) and int(n) > 0:
            t, f = next(iter(shares.items()))
            out[w] = f"{w} ({100 * f:.0f} % {t}, {int(n)} fallbacks)"
        else:
            out[w] = w
    return out


def _size_unit(k: pd.DataFrame) -> tuple[str, float]:
    return ("GiB", 2**30) if k.file_bytes.max() >= 2 * 2**30 else ("MiB", 2**20)


def _errorbars(ax, x, k, **kw):
    return ax.errorbar(x, k.kld_mean, yerr=k.kld_mean_err, linestyle="none", capsize=2, markersize=5, **kw)


def kld_vs_size(k: pd.DataFrame, out: Path, plt) -> list[Path]:
    k = k.dropna(subset=["file_bytes"])
    if k.empty:  # imported logs carry no file sizes
        return []
    unit, scale = _size_unit(k)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    pairs = _pairs(k)
    shown, note = readable(k)
    if note:  # every cell still drawn, as a faint cloud behind the named ones
        ax.scatter(k.file_bytes / scale, k.kld_mean, s=4, color="grey", alpha=0.3, linewidths=0,
                   rasterized=True, label=f"all {len(k)} cells")
    apart = _apart(shown)
    for i, (tk, tv) in enumerate(pairs):
        s = shown[(shown.type_k == tk) & (shown.type_v == tv)]
        dodge = 1 + 0.003 * (i - (len(pairs) - 1) / 2)  # pairs of one weights file side by side, not on top
        _errorbars(ax, s.file_bytes / scale * dodge * s.weights.map(apart), s, marker=MARKERS[i % len(MARKERS)],
                   label=f"K {tk} / V {tv}")
    front = k[analysis.pareto(list(k.file_bytes), list(k.kld_mean))].sort_values("file_bytes")
    ax.step(front.file_bytes / scale * front.weights.map(apart).fillna(1), front.kld_mean, where="post",
            color="black", linewidth=1, alpha=0.6, label="Pareto frontier")
    names = weights_labels(shown)
    notes = []
    for r in front[front.weights.isin(names)].itertuples():
        notes.append(ax.annotate(f"{names[r.weights]} {r.type_k}/{r.type_v}",
                                 (r.file_bytes / scale * apart.get(r.weights, 1), r.kld_mean),
                                 textcoords="offset points", xytext=(4, 4), fontsize=7))
    # a weights label with no cell on the frontier is named at its best cell, in grey: no point unnamed
    off = shown[~shown.weights.isin(front.weights)].sort_values("kld_mean").drop_duplicates("weights")
    for r in off.itertuples():
        notes.append(ax.annotate(names[r.weights], (r.file_bytes / scale * apart[r.weights], r.kld_mean),
                                 textcoords="offset points", xytext=(4, -10), fontsize=7, color="dimgrey"))
    ax.set_yscale("log")
    ax.set_xlabel(f"weights file size ({unit})")
    ax.set_ylabel("mean KLD (nats, log scale)")
    ax.set_title("Quality vs size\n" + _subtitle(k, note), fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    unstack(fig, notes)
    paths = _save(fig, out, "kld_vs_size")
    plt.close(fig)
    return paths


def _apart(k: pd.DataFrame) -> dict[str, float]:
    """A factor on each weights label's x: 1, or a step to the right for a label whose file is the size of
    an earlier one (Q4_K_M and Q4_K_M with an imatrix), so their points do not lie on top of each other."""
    sizes = k.groupby("weights", sort=False).file_bytes.max()
    out, seen = {}, []
    for w, b in sizes.items():
        twins = sum(1 for s in seen if abs(s - b) <= 0.01 * max(s, b))
        out[w] = 1 + 0.015 * twins
        seen.append(b)
    return out


def unstack(fig, notes: list, tries: int = 12) -> None:
    """Move each annotation whose text would overlap an earlier one down (then up) by its own height until
    it is clear: every label readable, none on top of another."""
    fig.draw_without_rendering()  # the axes' limits as they will be drawn
    renderer = fig.canvas.get_renderer()
    placed = []
    for a in notes:
        x, y = a.xyann
        box = a.get_window_extent(renderer)
        step = box.height * 72 / fig.dpi + 1  # points
        for i in range(tries):
            if not any(box.overlaps(p) for p in placed):
                break
            shift = step * (i // 2 + 1) * (-1 if i % 2 == 0 else 1)
            a.xyann = (x, y + shift)
            box = a.get_window_extent(renderer)
        placed.append(box)


def speed_xerr(means, stds) -> list[list[float]]:
    """± std as error bars, each lower arm cut at zero: a speed is never drawn below 0 t/s."""
    return [[min(e, m) for m, e in zip(means, stds)], list(stds)]


def kld_vs_speed(k: pd.DataFrame, out: Path, plt) -> list[Path]:
    """Colour names the weights, the marker the K/V pair: two legends, no labels over the data."""
    s, note = readable(k.dropna(subset=["tg_ts"]))
    if s.empty:
        return []
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors = {w: plt.get_cmap("tab10")(i % 10) for i, w in enumerate(dict.fromkeys(s.weights))}
    markers = {p: MARKERS[i % len(MARKERS)] for i, p in enumerate(_pairs(s))}
    std = s.tg_ts_std.fillna(0.0)
    s = s.assign(_std=std, _shaky=[analysis.unsteady(m, e) for m, e in zip(s.tg_ts, std)])
    for (w, tk, tv, shaky), g in s.groupby(["weights", "type_k", "type_v", "_shaky"], sort=False):
        ax.errorbar(g.tg_ts, g.kld_mean, xerr=speed_xerr(g.tg_ts, g._std), yerr=g.kld_mean_err,
                    linestyle="none", capsize=2, marker=markers[(tk, tv)], markersize=5,
                    color=colors[w], mfc="none" if shaky else colors[w])
    ax.set_xlim(left=max(0.0, ax.get_xlim()[0]))  # autoscale's margin must not show negative speeds
    ax.set_yscale("log")
    shaky = sum(analysis.unsteady(m, e) for m, e in zip(s.tg_ts, s.tg_ts_std.fillna(0)))
    ax.set_xlabel(f"generation speed, {s.tg_test.iloc[0]} (tokens/s, mean ± std)"
                  + (f"; hollow: {shaky} unsteady (spread > {analysis.BENCH_CV_MAX:.0%} of the mean)" if shaky else ""))
    ax.set_ylabel("mean KLD (nats, log scale)")
    ax.set_title("Quality vs generation speed\n" + _subtitle(s, note), fontsize=9)
    names = weights_labels(s)
    wl = ax.legend(handles=[Line2D([], [], color=c, marker="o", linestyle="none", label=names[w])
                            for w, c in colors.items()], title="weights", loc="upper left",
                   bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.add_artist(wl)
    ax.legend(handles=[Line2D([], [], color="black", marker=m, linestyle="none", label=f"K {tk} / V {tv}")
                       for (tk, tv), m in markers.items()], title="K/V cache", loc="lower left",
              bbox_to_anchor=(1.01, 0), fontsize=8)
    paths = _save(fig, out, "kld_vs_speed")
    plt.close(fig)
    return paths


def kld_vs_kv_memory(k: pd.DataFrame, arch: memory.Architecture, ctx: int, out: Path, plt) -> list[Path]:
    k, note = readable(k)
    kv = {p: sum(arch.kv_bytes(*p, ctx)) for p in _pairs(k)}
    k = k.assign(kv_mib=[kv[p] / 2**20 for p in zip(k.type_k, k.type_v)])
    fig, ax = plt.subplots(figsize=(8, 4.8))
    names = weights_labels(k)
    for i, w in enumerate(dict.fromkeys(k.weights)):
        s = k[k.weights == w].sort_values("kv_mib")
        ax.errorbar(s.kv_mib, s.kld_mean, yerr=s.kld_mean_err, marker=MARKERS[i % len(MARKERS)], markersize=5,
                    capsize=2, linewidth=0.8, label=names[w])
    for (tk, tv), x in dict(zip(zip(k.type_k, k.type_v), k.kv_mib)).items():
        ax.annotate(f"{tk}/{tv}", (x, 1), xycoords=("data", "axes fraction"), textcoords="offset points",
                    xytext=(0, 3), ha="left", rotation=35, fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel(f"K/V cache at ctx {ctx} (MiB, from the memory model)")
    ax.set_ylabel("mean KLD (nats, log scale)")
    ax.set_title("Quality vs K/V-cache memory\n" + _subtitle(k, note), fontsize=9, pad=40)
    ax.legend(title="weights", loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    paths = _save(fig, out, "kld_vs_kv_memory")
    plt.close(fig)
    return paths


def profiles(k: pd.DataFrame, out: Path, plt) -> list[Path]:
    """Percentile profiles: every weights quant at the first K/V pair (solid), and the other pairs of the
    largest weights quant (dashed)."""
    k, note = readable(k)
    first = _pairs(k)[0]
    base = k[(k.type_k == first[0]) & (k.type_v == first[1])].sort_values("file_bytes", ascending=False)
    top = k[k.weights == base.weights.iloc[0]] if not base.empty else k.iloc[0:0]
    others = top[(top.type_k != first[0]) | (top.type_v != first[1])]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4))
    cmap = plt.get_cmap("viridis")
    names = weights_labels(k)
    for i, (_, r) in enumerate(base.iterrows()):
        color = cmap(i / max(1, len(base) - 1))
        label = f"{names[r.weights]} {r.type_k}/{r.type_v}"
        a1.plot([n for n, _ in KLD_PCT], [r[c] for _, c in KLD_PCT], marker="o", markersize=3, color=color,
                label=label)
        a2.plot([n for n, _ in DP_PCT], [r[c] for _, c in DP_PCT], marker="o", markersize=3, color=color)
    for j, (_, r) in enumerate(others.iterrows()):
        style = dict(linestyle="--", marker=MARKERS[(j + 1) % len(MARKERS)], markersize=3, color="grey",
                     alpha=0.5 + 0.5 * j / max(1, len(others)))
        a1.plot([n for n, _ in KLD_PCT], [r[c] for _, c in KLD_PCT], label=f"{names[r.weights]} {r.type_k}/{r.type_v}",
                **style)
        a2.plot([n for n, _ in DP_PCT], [r[c] for _, c in DP_PCT], **style)
    a1.set_yscale("log")
    a1.set_xlabel("percentile of per-token KLD")
    a1.set_ylabel("KLD (nats, log scale)")
    a2.set_xlabel("percentile of per-token Δp")
    a2.set_ylabel("Δp, change of the correct token's probability (%)")
    for a in (a1, a2):
        a.tick_params(axis="x", labelrotation=45)
    fig.suptitle("Per-token distributions\n" + _subtitle(k, note), fontsize=9)
    fig.legend(loc="upper left", bbox_to_anchor=(0.99, 0.9), fontsize=8)
    fig.subplots_adjust(left=0.07, right=0.97, wspace=0.25, top=0.82)  # fixed: tight_layout took a third of the time
    paths = _save(fig, out, "profiles")
    plt.close(fig)
    return paths


def accuracy_vs_kld(t: pd.DataFrame, out: Path, plt) -> list[Path]:
    """Each cell's change of task accuracy from the reference against its KLD, a marker per task: filled
    where the paired test says its answers changed, hollow where no change was detected."""
    cells = t[t.weights != "reference"].dropna(subset=["kld_mean", "accuracy_delta"])
    if cells.empty:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (task, g) in enumerate(cells.groupby("task", sort=False)):
        m, color = MARKERS[i % len(MARKERS)], f"C{i}"
        for changed, face in ((True, color), (False, "none")):
            h = g[g.changed.astype(bool) == changed]
            if not h.empty:
                ax.scatter(h.kld_mean, 100 * h.accuracy_delta, marker=m, facecolors=face, edgecolors=color,
                           label=f"{task} ({'changed' if changed else 'no change detected'})")
    for r in cells.assign(_y=cells.accuracy_delta.round(4)).drop_duplicates(["weights", "type_k", "type_v", "_y"]
                                                                           ).itertuples():  # one label a point
        ax.annotate(f"{r.weights} {r.type_k}/{r.type_v}", (r.kld_mean, 100 * r.accuracy_delta), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="0.5", lw=0.8)
    if float(cells.kld_mean.min()) > 0:  # KLD spans decades from Q8_0 to 2-bit
        ax.set_xscale("log")
        ax.set_xlim(float(cells.kld_mean.min()) / 1.6, float(cells.kld_mean.max()) * 2.5)
    ax.set_xlabel("KLD from the reference (nats)")
    ax.set_ylabel("accuracy − reference's (points)")
    ax.set_title("Task accuracy change vs KLD (filled: the paired McNemar test says the answers changed)",
                 fontsize=8)
    ax.legend(fontsize=7, loc="best")
    try:
        return _save(fig, out, "accuracy_vs_kld")
    finally:
        plt.close(fig)


FIGURES = {"kld_vs_size": kld_vs_size, "kld_vs_speed": kld_vs_speed, "profiles": profiles,
           "kld_vs_kv_memory": kld_vs_kv_memory}


def _draw(name: str, args: tuple, out: Path) -> list[Path]:
    return FIGURES[name](*args, out, _plt())


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_FORKED: dict[int, list[tuple[Callable, tuple]]] = {}  # each Drawing's work, which its forked workers inherit


def _inherited(drawing: int, i: int) -> list[Path]:
    fn, args = _FORKED[drawing][i]
    return fn(*args)


class Drawing:
    """Figures, and any more of the caller's work (`also`: (fn, args) pairs whose fn returns the paths it
    wrote), done in forked worker processes when the machine has more than one CPU, so the caller writes
    its tables meanwhile; `wait` gives every path written. The workers inherit their work through the fork:
    only an index crosses the pipe, never a frame (pickling a 10,000-cell frame for each figure cost more
    than drawing it)."""

    def __init__(self, k: pd.DataFrame, arch: memory.Architecture | None, out: Path,
                 also: list[tuple[Callable, tuple]] = ()):
        work: list[tuple[Callable, tuple]] = list(also)  # first: a report's stats file is its longest task
        if not k.empty:
            out.mkdir(parents=True, exist_ok=True)
            work += [(_draw, (name, (k,), out)) for name in ("kld_vs_size", "kld_vs_speed", "profiles")]
            if arch is not None:
                work.append((_draw, ("kld_vs_kv_memory", (k, arch, int(k.ctx.max())), out)))
        self.work, self.pool, self.pending = work, None, []
        if len(work) > 1 and _cpus() > 1 and "fork" in multiprocessing.get_all_start_methods():
            _FORKED[id(self)] = work  # before the first submit, which forks every worker
            self.pool = ProcessPoolExecutor(min(_cpus(), 4, len(work)), mp_context=multiprocessing.get_context("fork"))
            mine = gc.get_freeze_count() == 0  # (a caller's own freeze is left as it is)
            if mine:
                gc.freeze()  # the workers' collector then leaves the parent's objects (and their pages) alone
            try:
                self.pending = [self.pool.submit(_inherited, id(self), i) for i in range(len(work))]
            except OSError:  # no process to be had (a process limit): all of it here, as on one CPU
                self._close()
            finally:
                if mine:
                    gc.unfreeze()

    def wait(self) -> list[Path]:
        try:
            if not self.pool:
                return [p for fn, args in self.work for p in fn(*args)]
            return [p for job in self.pending for p in job.result()]
        finally:
            self._close()

    def _close(self) -> None:
        if self.pool:
            self.pool.shutdown(cancel_futures=True)
            self.pool, self.pending = None, []
        _FORKED.pop(id(self), None)

