"""The report's figures (matplotlib, Agg backend), one PNG per figure and experiment."""

from __future__ import annotations

import math

CE_COLOR, LS_COLOR, BEST_COLOR = "#444444", "#1f77b4", "#d62728"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _gamma_axes(ax, xlabel: str, ylabel: str, title: str, invert: bool = True) -> None:
    """Labels, title, grid and legend of a plot against γ, with γ decreasing to the right (more smoothing)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if invert:
        ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _save(fig, path: str) -> None:
    """Lay out, write the PNG and free the figure."""
    from labelsmooth.experiment.atomic import atomic_path

    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # a full disk leaves no truncated PNG under the real name
            fig.savefig(tmp)
    finally:
        _plt().close(fig)


def _gamma_series(summary: dict, settings: dict, metric: str, param: str = "gamma"):
    pts = sorted((s[param], *summary[label][metric][:2]) for label, s in settings.items() if s.get(param) is not None)
    return [p[0] for p in pts], [p[1] for p in pts], [0.0 if math.isnan(p[2]) else p[2] for p in pts]


def metric_vs_gamma(
    name: str, summary: dict, settings: dict, metric: str, path: str, scale: float = 1.0, param: str = "gamma"
) -> bool:
    """Mean ± 95% CI of ``metric`` against γ (or β: ``param="beta"``), cross-entropy as a reference band."""
    g, m, h = _gamma_series(summary, settings, metric, param)
    if not g:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=110)
    m = [v * scale for v in m]
    h = [v * scale for v in h]
    ax.fill_between(g, [a - b for a, b in zip(m, h)], [a + b for a, b in zip(m, h)], color=LS_COLOR, alpha=0.2)
    ax.plot(g, m, "o-", color=LS_COLOR, label="label smoothing (γ)" if param == "gamma" else "confidence penalty (β)")
    if "ce" in summary:
        cm, ch, _ = summary["ce"][metric]
        cm, ch = cm * scale, (0.0 if math.isnan(ch) else ch * scale)
        ax.axhline(cm, color=CE_COLOR, ls="--", label="cross-entropy")
        ax.axhspan(cm - ch, cm + ch, color=CE_COLOR, alpha=0.1)
    ylabel = {
        "accuracy": "test accuracy (%)", "ece": "ECE (%)", "nll": "test NLL", "ts_ece": "ECE after temp. scaling (%)",
    }.get(metric, metric)  # fmt: skip
    if param == "gamma":
        _gamma_axes(ax, "γ (probability on the true class)", ylabel, f"{name}: {metric} vs γ (mean, 95% CI)")
    else:
        _gamma_axes(ax, "β (confidence-penalty weight)", ylabel, f"{name}: {metric} vs β (mean, 95% CI)", False)
    _save(fig, path)
    return True


def pooled_bins(runs: list[dict], scaled: bool = False) -> dict | None:
    """Reliability bins summed over runs (counts add; accuracy and confidence weighted by counts).

    ``scaled``: the bins after temperature scaling (``extra.reliability_ts``) instead of the raw ones.
    """
    if scaled:
        bins = [(r.get("extra") or {}).get("reliability_ts") for r in runs]
        bins = [b for b in bins if b]
    else:
        bins = [r["reliability"] for r in runs if r.get("reliability")]
    if not bins:
        return None
    n = len(bins[0]["count"])
    count = [sum(b["count"][i] for b in bins) for i in range(n)]
    acc = [sum((b["accuracy"][i] or 0) * b["count"][i] for b in bins) / c if c else None for i, c in enumerate(count)]
    conf = [
        sum((b["confidence"][i] or 0) * b["count"][i] for b in bins) / c if c else None for i, c in enumerate(count)
    ]
    return {"count": count, "accuracy": acc, "confidence": conf}


def reliability(name: str, panels: list[tuple[str, dict]], path: str) -> bool:
    """Reliability diagrams side by side: accuracy per confidence bin against the diagonal."""
    panels = [(t, b) for t, b in panels if b]
    if not panels:
        return False
    plt = _plt()
    cols = min(len(panels), 2 if len(panels) == 4 else 3)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.6 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, b) in zip(axes.flat, panels):
        n = len(b["count"])
        edges = [i / n for i in range(n)]
        acc = [a if a is not None else 0 for a in b["accuracy"]]
        ax.bar(edges, acc, width=1 / n, align="edge", color=LS_COLOR, edgecolor="white", label="accuracy")
        conf = [c if c is not None else a for a, c in zip(acc, b["confidence"])]
        ax.bar(
            edges,
            [abs(c - a) for a, c in zip(acc, conf)],
            bottom=[min(a, c) for a, c in zip(acc, conf)],
            width=1 / n,
            align="edge",
            facecolor="none",
            edgecolor=BEST_COLOR,
            hatch="///",
            lw=0.8,
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        total = sum(b["count"])
        ece = sum(c / total * abs(a - f) for a, f, c in zip(acc, b["confidence"], b["count"]) if c)
        ax.set_title(f"{title}\nECE (pooled) = {100 * ece:.2f}%", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{name}: reliability (all seeds pooled)", fontsize=10)
    _save(fig, path)
    return True


def logit_gap(name: str, points: list[tuple[float, float, float]], K: int, path: str) -> bool:
    """Measured logit gap (mean ± CI over seeds) against the optimum log(γ(K−1)/(1−γ)) for each γ."""
    if not points:
        return False
    import labelsmooth

    plt = _plt()
    points = sorted(points)
    g = [p[0] for p in points]
    fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=110)
    ax.errorbar(
        g,
        [p[1] for p in points],
        yerr=[0 if math.isnan(p[2]) else p[2] for p in points],
        fmt="o-",
        color=LS_COLOR,
        capsize=3,
        label="measured (test set)",
    )
    fine = [min(g) + (max(g) - min(g)) * i / 50 for i in range(51)] if len(g) > 1 else g
    ax.plot(
        fine,
        [labelsmooth.optimal_logit_gap(x, K, "gamma") for x in fine],
        color=BEST_COLOR,
        ls="--",
        label="optimal: log(γ(K−1)/(1−γ))",
    )
    _gamma_axes(ax, "γ", "logit gap z_pred − mean(others)", f"{name}: logit gap vs theory (K = {K})")
    _save(fig, path)
    return True
