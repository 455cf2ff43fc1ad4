"""The sweep report: DIR/report.md (with PNGs next to it) and DIR/report.html (one self-contained page).

Contents: the verdicts and what "±" means; per experiment the set-up (model and its parameter count,
epochs, batch size, optimiser, split sizes, search space), the hyperparameters selected on validation per
setting and split, a results table (mean ± 95% CI over seeds of accuracy, NLL and ECE raw and after
temperature scaling, T, and the paired comparison against cross-entropy: bootstrap CI and p, t-test,
Wilcoxon where it can reach α, McNemar), the calibration differences with CIs, accuracy and ECE against γ
and against β with CI bands, reliability diagrams before and after temperature scaling for cross-entropy and
the best γ, and the measured logit gap against :func:`labelsmooth.optimal_logit_gap`; then the commands,
hardware and wall time.
"""

from __future__ import annotations

import base64
import html
import math
import os
import re

from labelsmooth.experiment import plots
from labelsmooth.experiment.atomic import atomic_write
from labelsmooth.experiment.stats import ALPHA, Analysis, analyse, mean_ci, setting_label

TEST_NOTE = (
    "Verdicts rest on the paired bootstrap that counts both sources of noise: it resamples the (split, seed) "
    "units with replacement and, within each, the test examples with replacement (the same examples for both "
    "arms); 10,000 replicates, two-sided, Holm across the settings of each data set, α = 0.05. The paired "
    "t-test over units counts seed noise only and is shown for reference; the exact Wilcoxon signed-rank test "
    "is shown only where its Holm-adjusted p can reach α. McNemar's exact test is given per unit (how many of "
    "the units have p < 0.05) and pooled over units. Only the final runs count: every seed at the "
    "hyperparameters selected on validation; the test part was read for nothing else."
)
PM_NOTE = (
    "“±” is the half-width of the 95% t-interval over the (split, seed) units: mean ± t(0.975, n − 1)·s/√n. It "
    "counts seed (and split) noise only; the bootstrap CI of Δacc counts the test set's sampling too. "
    "“ts-” columns are after temperature scaling fitted on the validation logits; T is the fitted temperature."
)


def _fmt(mean: float, half: float, scale: float = 1.0, digits: int = 2) -> str:
    if math.isnan(mean):
        return "–"
    if math.isnan(half):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} ± {half * scale:.{digits}f}"


def _p(p: float) -> str:
    return "–" if math.isnan(p) else f"{p:.3g}"


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def write_report(
    runs: list[dict],
    sweeps: list[dict],
    out_dir: str,
    title: str = "Label smoothing sweep",
    *,
    markdown_path: str | None = None,
    notes: str | None = None,
    predictions: dict | None = None,
) -> dict:
    """Write report.md, report.html and the PNGs into ``out_dir``; returns their paths and the analysis.

    ``markdown_path`` puts the Markdown elsewhere (its figure links are made relative to it); ``notes``,
    Markdown text, goes into it after the verdicts (e.g. a discussion written by hand). ``predictions``
    (``Store.predictions()``) feed the tests that count the test set; without them there is no verdict.
    """
    os.makedirs(out_dir, exist_ok=True)
    a = analyse(runs, predictions)
    figures: dict[str, list[tuple[str, str]]] = {}
    for name in a.summary:
        figures[name] = _figures(name, a, runs, out_dir)
    md_path = markdown_path or os.path.join(out_dir, "report.md")
    md = _markdown(a, runs, sweeps, figures, title, os.path.dirname(os.path.abspath(md_path)), notes)
    with atomic_write(md_path) as f:
        f.write(md)
    html_path = os.path.join(out_dir, "report.html")
    with atomic_write(html_path) as f:
        f.write(_html(a, runs, sweeps, figures, title, out_dir))
    return {"markdown": md_path, "html": html_path, "analysis": a}


def _runs_of(name: str, a: Analysis, runs: list[dict], label: str) -> list[dict]:
    """The final runs of one setting (every seed at its selected hyperparameters)."""
    return a.finals.get(name, {}).get(label, [])


def best_gamma(name: str, a: Analysis) -> str | None:
    """The γ setting with the highest mean accuracy."""
    labels = [lab for lab, s in a.settings[name].items() if s.get("gamma") is not None]
    return max(labels, key=lambda lab: a.summary[name][lab]["accuracy"][0]) if labels else None


def _figures(name: str, a: Analysis, runs: list[dict], out_dir: str) -> list[tuple[str, str]]:
    slug = _slug(name)
    out = []
    summary, settings = a.summary[name], a.settings[name]
    for metric, scale in (("accuracy", 100.0), ("ece", 100.0)):
        path = os.path.join(out_dir, f"{slug}-{metric}.png")
        if plots.metric_vs_gamma(name, summary, settings, metric, path, scale):
            out.append((f"{metric} against γ", path))
    for metric, scale in (("accuracy", 100.0), ("ece", 100.0)):
        path = os.path.join(out_dir, f"{slug}-{metric}-beta.png")
        if plots.metric_vs_gamma(name, summary, settings, metric, path, scale, param="beta"):
            out.append((f"{metric} against β", path))
    best = best_gamma(name, a)
    ce_runs = _runs_of(name, a, runs, "ce")
    panels = [
        ("cross-entropy", plots.pooled_bins(ce_runs)),
        ("cross-entropy, temp. scaled", plots.pooled_bins(ce_runs, True)),
    ]
    if best:
        best_runs = _runs_of(name, a, runs, best)
        pretty = best.replace("=", " = ")
        panels.append((f"best {pretty}", plots.pooled_bins(best_runs)))
        panels.append((f"best {pretty}, temp. scaled", plots.pooled_bins(best_runs, True)))
    path = os.path.join(out_dir, f"{slug}-reliability.png")
    if plots.reliability(name, panels, path):
        out.append(("reliability diagrams", path))
    points = []
    for label, s in settings.items():
        if s.get("gamma") is not None:
            gaps = [r["metrics"]["logit_gap"] for r in _runs_of(name, a, runs, label)]
            points.append((s["gamma"], *mean_ci(gaps)))
    path = os.path.join(out_dir, f"{slug}-logit-gap.png")
    if plots.logit_gap(name, points, a.info[name]["num_classes"], path):
        out.append(("logit gap against the optimum", path))
    return out


def _ci(c, metric: str, scale: float, digits: int) -> str:
    d, lo, hi = c.calibration.get(metric, (math.nan, math.nan, math.nan))
    if math.isnan(d):
        return "–"
    return f"{d * scale:+.{digits}f} [{lo * scale:+.{digits}f}, {hi * scale:+.{digits}f}]"


def _table_rows(name: str, a: Analysis) -> list[list[str]]:
    comps = {c.setting: c for c in a.comparisons.get(name, [])}
    rows = []
    labels = list(a.settings[name]) + [c.setting for c in a.comparisons.get(name, []) if c.selected]
    for label in labels:
        s = a.summary[name].get(label)
        c = comps.get(label)
        if s is None:  # a selected-on-validation arm: its numbers are its chosen settings' runs
            picks = ", ".join(f"split {k}: {v.replace('=', ' = ')}" for k, v in sorted((c.selected or {}).items()))
            cells = [f"{label} ({picks})", str(c.seeds), "", "", "", "", "", ""]
        else:
            cells = [
                label.replace("=", " = "),
                str(s["accuracy"][2]),
                _fmt(*s["accuracy"][:2], scale=100),
                _fmt(*s["nll"][:2], digits=3),
                _fmt(*s["ece"][:2], scale=100),
                _fmt(*s["ts_nll"][:2], digits=3),
                _fmt(*s["ts_ece"][:2], scale=100),
                _fmt(*s["temperature"][:2], digits=2),
            ]
        if c:
            lo, hi = c.ci_points
            mc = sum(1 for p in c.mcnemar if p < ALPHA)
            cells += [
                f"{c.diff_points:+.2f}" + ("" if math.isnan(lo) else f" [{lo:+.2f}, {hi:+.2f}]"),
                _p(c.p_boot_holm),
                _p(c.p_t_holm),
                "–" if c.wilcoxon_absent else _p(c.p_wilcoxon_holm),
                f"{mc}/{len(c.mcnemar)}" if c.mcnemar else "–",
                _p(c.p_mcnemar_pooled),
                ("yes" if c.significant else "no") + (f" ({c.note})" if c.note else ""),
            ]
        else:
            cells += ["(baseline)", "", "", "", "", "", ""]
        rows.append(cells)
    return rows


OVERVIEW_HEADER = [
    "experiment",
    "units",
    "CE accuracy %",
    "CE confidence − accuracy, points",
    "CE ECE % → ts-ECE %",
    "γ selected on validation: Δacc [95% CI]",
    "ΔECE % [95% CI]",
    "Δts-ECE % [95% CI]",
    "β selected on validation: Δacc [95% CI]",
    "ΔECE % [95% CI]",
]
SELECTED = {"ls": "smoothing selected on validation", "cp": "β selected on validation"}


def _delta(c) -> str:
    if c is None:
        return "–"
    lo, hi = c.ci_points
    mark = " ✓" if c.significant else (" ✗" if c.diff_points < 0 and c.p_boot_holm < ALPHA else "")
    return f"{c.diff_points:+.2f}" + ("" if math.isnan(lo) else f" [{lo:+.2f}, {hi:+.2f}]") + mark


def _overview_rows(a: Analysis) -> list[list[str]]:
    """One row per experiment: the baseline, and each selected-on-validation arm against it."""
    rows = []
    for name in a.summary:
        ce = a.summary[name].get("ce")
        if ce is None:
            continue
        runs = a.finals[name]["ce"]
        over = [
            100 * (r["metrics"]["confidence"] - r["metrics"]["accuracy"]) for r in runs if "confidence" in r["metrics"]
        ]
        comps = {c.setting: c for c in a.comparisons.get(name, [])}
        ls, cp = comps.get(SELECTED["ls"]), comps.get(SELECTED["cp"])
        rows.append(
            [
                name,
                str(ce["accuracy"][2]),
                _fmt(*ce["accuracy"][:2], scale=100),
                f"{sum(over) / len(over):+.2f}" if over else "–",
                f"{100 * ce['ece'][0]:.2f} → {100 * ce['ts_ece'][0]:.2f}",
                _delta(ls),
                _ci(ls, "ece", 100, 2) if ls else "–",
                _ci(ls, "ts_ece", 100, 2) if ls else "–",
                _delta(cp),
                _ci(cp, "ece", 100, 2) if cp else "–",
            ]
        )
    return rows


OVERVIEW_NOTE = (
    "Each arm picks, per split, the setting of its family (every γ; every β) with the best mean validation "
    "accuracy, so it is a procedure a user can run, not the best setting seen on test. ✓: better than "
    "cross-entropy with Holm-adjusted bootstrap p < 0.05; ✗: worse with p < 0.05. The CIs come from the "
    "two-level bootstrap that resamples the units and the test examples."
)


HEADER = [
    "setting",
    "units",
    "accuracy %",
    "NLL",
    "ECE %",
    "ts-NLL",
    "ts-ECE %",
    "T",
    "Δacc vs CE, points [bootstrap 95% CI]",
    "p bootstrap (Holm)",
    "p t-test (Holm)",
    "p Wilcoxon (Holm)",
    "McNemar p < 0.05 (units)",
    "p McNemar pooled",
    f"beats CE (bootstrap p < {ALPHA})",
]
CAL_HEADER = ["setting", "ΔNLL [95% CI]", "ΔECE % [95% CI]", "Δts-NLL [95% CI]", "Δts-ECE % [95% CI]"]


def _calibration_rows(name: str, a: Analysis) -> list[list[str]]:
    return [
        [c.setting.replace("=", " = "), _ci(c, "nll", 1, 3), _ci(c, "ece", 100, 2), _ci(c, "ts_nll", 1, 3),
         _ci(c, "ts_ece", 100, 2)]
        for c in a.comparisons.get(name, [])
        if c.calibration
    ]  # fmt: skip


def _setup(name: str, a: Analysis) -> list[str]:
    """The experiment's set-up in sentences: model, parameters, training, splits, search space."""
    finals = [r for rs in a.finals.get(name, {}).values() for r in rs]
    if not finals:
        return []
    r0 = finals[0]
    cfg = r0["config"]
    extra = r0.get("extra") or {}
    data, settings = extra.get("data") or {}, extra.get("settings") or {}
    splits = sorted({r["config"].get("split", 0) for r in finals})
    seeds = sorted({r["config"]["seed"] for r in finals})
    epochs = sorted({r["config"]["epochs"] for r in finals})
    params = settings.get("num_parameters")
    params = f"{params:,}" if isinstance(params, int) else "?"
    lines = [
        f"Model `{cfg['model']}` ({params} parameters), {'/'.join(map(str, epochs))} "
        f"epochs, batch size {cfg['batch_size']}, {cfg['optimizer']} with a {cfg['schedule']} schedule, "
        f"augmentation {'on' if cfg.get('augment') else 'off'}.",
        f"Splits: train {data.get('train_size', '?')}, validation {data.get('val_size', '?')} "
        f"(a stratified {cfg.get('val_fraction', 0.2):g} of the training data), test {data.get('test_size', '?')}; "
        f"{len(splits)} {'split' if len(splits) == 1 else 'splits'} × {len(seeds)} seeds ({', '.join(map(str, seeds))}).",
    ]
    trials = {}
    for label, by_split in a.choices.get(name, {}).items():
        for choice in by_split.values():
            trials[label] = choice.trials + choice.failed
    lrs = sorted({r["config"].get("lr") for r in finals if r["config"].get("lr") is not None})
    if trials:
        budget = sorted(set(trials.values()))
        lines.append(
            f"Tuning: {'/'.join(map(str, budget))} trials per setting and split (first seed), selected on "
            f"validation accuracy (ties: validation NLL); the selected values are below"
            + ("." if lrs else " (the optimiser's default learning rate).")
        )
    return lines


def _choice_rows(name: str, a: Analysis) -> list[list[str]]:
    rows = []
    for label, by_split in a.choices.get(name, {}).items():
        for split, c in sorted(by_split.items()):
            lr = c.point.get("lr")
            rows.append(
                [label.replace("=", " = "), str(split), "default" if lr is None else f"{lr:g}",
                 f"{c.point.get('weight_decay'):g}", f"{100 * c.val_accuracy:.2f}",
                 f"{c.val_nll:.3f}", f"{c.trials}" + (f" ({c.failed} failed)" if c.failed else "")]
            )  # fmt: skip
    return rows


def edge_note(name: str, a: Analysis) -> str | None:
    """How often a selected hyperparameter is the edge of the search space, where that happens at all."""
    from collections import Counter

    choices = [c for by_split in a.choices.get(name, {}).values() for c in by_split.values()]
    edges = Counter(e for c in choices for e in c.at_edge())
    if not edges:
        return None
    parts = [f"{what} in {n} of {len(choices)}" for what, n in sorted(edges.items(), key=lambda kv: -kv[1])]
    return (
        "Selected at the edge of the search space: " + "; ".join(parts) + " choices (setting × split). "
        "Where that is most of them, the best value may lie outside the space searched, for every setting alike."
    )


def _wilcoxon_note(name: str, a: Analysis) -> str | None:
    """Why the Wilcoxon column is empty, where it is (it cannot reach α with so few units)."""
    reasons = sorted({c.wilcoxon_absent for c in a.comparisons.get(name, []) if c.wilcoxon_absent})
    return ("Wilcoxon signed-rank test not shown: " + "; ".join(reasons) + f" (α = {ALPHA}).") if reasons else None


CHOICE_HEADER = ["setting", "split", "lr", "weight decay", "val accuracy %", "val NLL", "trials"]


def data_lines(runs: list[dict], limit: int = 20) -> list[str]:
    """One line per data set (and training size): classes, training counts, imbalance, from the run records."""
    from labelsmooth.experiment import splits, user_data

    lines, seen = [], set()
    for r in runs:
        d, c = (r.get("extra") or {}).get("data") or {}, r["config"]
        key = (c["dataset"], d.get("train_size"))
        if key in seen or not d.get("class_counts") or not d.get("classes"):
            continue
        seen.add(key)
        counts = d["class_counts"]
        pairs = [f"{k} {n}" for k, n in zip(d["classes"], counts)]
        shown = ", ".join(pairs[:limit]) + (f", ... ({len(pairs) - limit} more)" if len(pairs) > limit else "")
        name = user_data.short_name(c["dataset"]) if user_data.is_user_name(c["dataset"]) else c["dataset"]
        ratio = f"{max(counts) / min(counts):.2f}" if min(counts) else "inf (a class has no training example)"
        lines.append(
            f"Data {name} ({d.get('source')}): {len(pairs)} classes, {splits.part_sizes(d)}; training examples per "
            f"class: {shown}; imbalance (largest / smallest) {ratio}"
        )
    return lines


def _busy_seconds(runs: list[dict]) -> float:
    """Seconds during which at least one of ``runs`` was training: the union of [finished − total, finished].

    Example:
        >>> _busy_seconds([{"finished": 10.0, "timings": {"total": 4.0}}, {"finished": 12.0, "timings": {"total": 4.0}},
        ...                {"finished": 30.0, "timings": {"total": 5.0}}])
        11.0
    """
    spans = sorted(
        (r["finished"] - t, r["finished"])
        for r in runs
        if r.get("finished") is not None and (t := (r.get("timings") or {}).get("total"))
    )
    total, start, end = 0.0, None, None
    for a, b in spans:
        if end is None or a > end:
            total += 0.0 if end is None else end - start
            start, end = a, b
        else:
            end = max(end, b)
    return total + (0.0 if end is None else end - start)


def _provenance(runs: list[dict], sweeps: list[dict]) -> list[str]:
    lines = []
    done = [r for r in runs if r["status"] == "done"]
    failed = [r for r in runs if r["status"] == "failed"]
    lines.append(f"Runs: {len(done)} done, {len(failed)} failed.")
    cpu = sum((r.get("timings") or {}).get("total", 0.0) for r in done)
    lines.append(f"Sum of run times: {cpu / 60:.1f} min.")
    busy = _busy_seconds(done)
    if busy:
        walls = [s["wall_s"] for s in sweeps if s.get("wall_s") is not None]
        lines.append(
            f"Wall time with at least one run training: {busy / 3600:.2f} h (the union of the runs' own "
            f"intervals, so sweeps cut off count too; {len(walls)} of {len(sweeps)} sweeps finished and "
            f"recorded {sum(walls) / 3600:.2f} h)."
        )
    for s in sweeps:
        m = s.get("machine") or {}
        wall = f"{s['wall_s']:.0f} s" if s.get("wall_s") is not None else "unfinished (killed or running)"
        lines.append(
            f"Sweep {s['id']}: `{s['command']}` — {s['runs']} runs, backend {s['backend']}, "
            f"{s['workers']} workers × "
            f"{m.get('threads_per_run', '?')} threads, wall time {wall}; machine {m.get('cpu', '?')}, "
            f"{m.get('cpu_count', '?')} cores, {m.get('platform', '?')}"
        )
    versions = next((r.get("versions") for r in done if r.get("versions")), None)
    if versions:
        lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += data_lines(done)
    for r in failed[:20]:
        c = r["config"]
        lines.append(f"Failed: {c['dataset']} {setting_label(c)} seed {c['seed']}: {r.get('error')}")
    return lines


def _md(text: object) -> str:
    r"""Text from the store or the command line, safe in Markdown: HTML escaped as report.html escapes it
    (``<``, ``>``, ``&``), and ``|``, ``[``, ``]`` backslash-escaped so that it cannot end a table cell or
    a link text. (Inside a code span the entities show as written; the text stays inert.)

    Example:
        >>> print(_md("<script>alert(1)</script> | x"))
        &lt;script&gt;alert(1)&lt;/script&gt; \| x
    """
    return re.sub(r"([|\[\]])", r"\\\1", html.escape(str(text), quote=False))


def _legacy_note(a: Analysis) -> str | None:
    if not a.legacy:
        return None
    return (
        f"{a.legacy} runs in this store were written before the study protocol (no validation split, "
        "hyperparameters not tuned per setting, no stored predictions): they are shown, but no verdict rests on "
        "them. Run `labelsmooth reproduce` (or `labelsmooth sweep`) into a new store for the protocol's numbers."
    )


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows] + [""]


def _markdown(a, runs, sweeps, figures, title, md_dir, notes=None) -> str:
    out = [f"# {_md(title)}", "", "## Verdicts", ""]
    out += [f"- {_md(v)}" for v in a.verdicts.values()] or ["- no finished runs"]
    out += ["", TEST_NOTE, "", PM_NOTE, ""]
    if _legacy_note(a):
        out += [f"**Note:** {_legacy_note(a)}", ""]
    overview = _overview_rows(a)
    if len(overview) > 1:
        out += ["## Overview", "", OVERVIEW_NOTE, ""] + _md_table(OVERVIEW_HEADER, overview)
    if notes:  # the user's own Markdown, by design not escaped
        out += [notes.strip(), ""]
    for name in a.summary:
        out += [f"## {_md(name)}", ""] + _setup(name, a) + [""]
        out += _md_table(HEADER, _table_rows(name, a))
        if _wilcoxon_note(name, a):
            out += [_wilcoxon_note(name, a), ""]
        cal = _calibration_rows(name, a)
        if cal:
            out += ["Calibration, setting − cross-entropy (95% CI from the same two-level bootstrap):", ""]
            out += _md_table(CAL_HEADER, cal)
        out += ["Hyperparameters selected on validation:", ""] + _md_table(CHOICE_HEADER, _choice_rows(name, a))
        if edge_note(name, a):
            out += [edge_note(name, a), ""]
        out += [
            f"![{_md(name)}: {_md(caption)}]({os.path.relpath(os.path.abspath(path), md_dir)})"
            for caption, path in figures[name]
        ]
        out.append("")
    out += ["## Provenance", ""] + [f"- {_md(line)}" for line in _provenance(runs, sweeps)]
    return "\n".join(out) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1180px;margin:24px auto;
  padding:0 20px;color:#222;background:#fff;line-height:1.45}
h1{font-size:1.6em;margin-bottom:4px}
h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
ul.verdicts li{font-size:1.08em;margin:4px 0}
.note{color:#555;font-size:.92em}
table{border-collapse:collapse;margin:10px 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
tr.win td{background:#e8f6e8}
.figs{display:flex;flex-wrap:wrap;gap:10px}
.figs figure{margin:0}
.figs img{max-width:560px;width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;text-align:center}
code{background:#f5f5f5;padding:1px 4px}
"""  # a rule per line (the page carries it on one line: _style)


def _style() -> str:
    """The page's stylesheet, :data:`CSS` with its rules on one line (a generated page, not for editing)."""
    return "".join(line.strip() for line in CSS.splitlines())


def _html_table(header: list[str], rows: list[list[str]], mark_wins: bool = False) -> list[str]:
    """A table's lines: the header row, then a line per row; with ``mark_wins`` a row whose last cell
    starts with "yes" (beats cross-entropy) gets ``class="win"``."""
    e = html.escape
    out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cls = ' class="win"' if mark_wins and row[-1].startswith("yes") else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
    return out + ["</table>"]


def _html(a, runs, sweeps, figures, title, out_dir) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_style()}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<h2>Verdicts</h2>",
        '<ul class="verdicts">',
    ]
    out += [f"<li>{e(v)}</li>" for v in a.verdicts.values()] or ["<li>no finished runs</li>"]
    out += ["</ul>", f'<p class="note">{e(TEST_NOTE)}</p>', f'<p class="note">{e(PM_NOTE)}</p>']
    if _legacy_note(a):
        out.append(f"<p><strong>Note:</strong> {e(_legacy_note(a))}</p>")
    overview = _overview_rows(a)
    if len(overview) > 1:
        out += ["<h2>Overview</h2>", f'<p class="note">{e(OVERVIEW_NOTE)}</p>', *_html_table(OVERVIEW_HEADER, overview)]
    for name in a.summary:
        out += [f"<h2>{e(name)}</h2>"] + [f"<p>{e(line)}</p>" for line in _setup(name, a)]
        out += _html_table(HEADER, _table_rows(name, a), mark_wins=True)
        if _wilcoxon_note(name, a):
            out.append(f'<p class="note">{e(_wilcoxon_note(name, a))}</p>')
        for caption, header, rows in (
            (
                "Calibration, setting − cross-entropy (95% CI, two-level bootstrap)",
                CAL_HEADER,
                _calibration_rows(name, a),
            ),
            ("Hyperparameters selected on validation", CHOICE_HEADER, _choice_rows(name, a)),
        ):
            if rows:
                out += [f'<p class="note">{e(caption)}</p>', *_html_table(header, rows)]
        if edge_note(name, a):
            out.append(f'<p class="note">{e(edge_note(name, a))}</p>')
        out.append('<div class="figs">')
        for caption, path in figures[name]:
            with open(path, "rb") as f:
                data = base64.b64encode(f.read()).decode()
            out.append(
                f'<figure><img alt="{e(name)}: {e(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
        out.append("</div>")
    out += ["<h2>Provenance</h2>", "<ul>"]
    out += [f"<li>{e(line)}</li>" for line in _provenance(runs, sweeps)]
    out += ["</ul>", "</body></html>"]
    return "\n".join(out) + "\n"
