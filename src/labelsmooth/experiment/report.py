"""The sweep report: DIR/report.md (with PNGs next to it) and DIR/report.html (one self-contained page).

Contents: the verdicts, a results table (mean ± 95% CI over seeds of accuracy, NLL and ECE, and the
paired comparison against cross-entropy), and per experiment: accuracy and ECE against γ with CI bands
(cross-entropy as a reference line), reliability diagrams for cross-entropy and the best γ, and the
measured logit gap against :func:`labelsmooth.optimal_logit_gap`; then the commands, hardware and wall time.
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
    "Verdicts use the Holm-adjusted two-sided paired t-test over seeds (α = 0.05, Holm across the settings "
    "of each data set); the Wilcoxon signed-rank p (Holm-adjusted) is shown alongside. With fewer than 6 "
    "seeds the exact Wilcoxon p cannot go below 0.0625."
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
) -> dict:
    """Write report.md, report.html and the PNGs into ``out_dir``; returns their paths and the analysis.

    ``markdown_path`` puts the Markdown elsewhere (its figure links are made relative to it); ``notes``,
    Markdown text, goes into it after the verdicts (e.g. a discussion written by hand).
    """
    os.makedirs(out_dir, exist_ok=True)
    a = analyse(runs)
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
    from labelsmooth.experiment.stats import experiment_of

    want = a.info[name]["config"]
    return [
        r
        for r in runs
        if r["status"] == "done" and dict(experiment_of(r["config"])) == want and setting_label(r["config"]) == label
    ]


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
    best = best_gamma(name, a)
    panels = [("cross-entropy", plots.pooled_bins(_runs_of(name, a, runs, "ce")))]
    if best:
        panels.append((f"best {best.replace('=', ' = ')}", plots.pooled_bins(_runs_of(name, a, runs, best))))
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


def _table_rows(name: str, a: Analysis) -> list[list[str]]:
    comps = {c.setting: c for c in a.comparisons.get(name, [])}
    rows = []
    for label in a.settings[name]:
        s = a.summary[name][label]
        c = comps.get(label)
        rows.append(
            [
                label.replace("=", " = "),
                str(s["accuracy"][2]),
                _fmt(*s["accuracy"][:2], scale=100),
                _fmt(*s["nll"][:2], digits=3),
                _fmt(*s["ece"][:2], scale=100),
                f"{c.diff_points:+.2f}" if c else "(baseline)",
                _p(c.p_t_holm) if c else "",
                _p(c.p_wilcoxon_holm) if c else "",
                ("yes" if c.significant else "no") + (f" ({c.note})" if c.note else "") if c else "",
            ]
        )
    return rows


HEADER = [
    "setting",
    "seeds",
    "accuracy %",
    "NLL",
    "ECE %",
    "Δacc vs CE (points)",
    "p t-test (Holm)",
    "p Wilcoxon (Holm)",
    f"beats CE (p < {ALPHA})",
]


def _provenance(runs: list[dict], sweeps: list[dict]) -> list[str]:
    lines = []
    done = [r for r in runs if r["status"] == "done"]
    failed = [r for r in runs if r["status"] == "failed"]
    lines.append(f"Runs: {len(done)} done, {len(failed)} failed.")
    cpu = sum((r.get("timings") or {}).get("total", 0.0) for r in done)
    lines.append(f"Sum of run times: {cpu / 60:.1f} min.")
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


def _markdown(a, runs, sweeps, figures, title, md_dir, notes=None) -> str:
    out = [f"# {_md(title)}", "", "## Verdicts", ""]
    out += [f"- {_md(v)}" for v in a.verdicts.values()] or ["- no finished runs"]
    out += ["", TEST_NOTE, ""]
    if notes:  # the user's own Markdown, by design not escaped
        out += [notes.strip(), ""]
    for name in a.summary:
        out += [f"## {_md(name)}", "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in _table_rows(name, a)]
        out.append("")
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
h1{font-size:1.6em;margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
ul.verdicts li{font-size:1.08em;margin:4px 0}.note{color:#555;font-size:.92em}
table{border-collapse:collapse;margin:10px 0;font-size:.92em}th,td{border:1px solid #ccc;padding:4px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
tr.win td{background:#e8f6e8}.figs{display:flex;flex-wrap:wrap;gap:10px}
.figs figure{margin:0}.figs img{max-width:560px;width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#555;text-align:center}code{background:#f5f5f5;padding:1px 4px}
"""


def _html(a, runs, sweeps, figures, title, out_dir) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<h2>Verdicts</h2>",
        '<ul class="verdicts">',
    ]
    out += [f"<li>{e(v)}</li>" for v in a.verdicts.values()] or ["<li>no finished runs</li>"]
    out += ["</ul>", f'<p class="note">{e(TEST_NOTE)}</p>']
    for name in a.summary:
        out += [f"<h2>{e(name)}</h2>", "<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr>"]
        for row in _table_rows(name, a):
            cls = ' class="win"' if row[-1].startswith("yes") else ""
            out.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
        out += ["</table>", '<div class="figs">']
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
