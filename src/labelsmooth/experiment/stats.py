r"""Statistics of a sweep: means with 95% confidence intervals over seeds, and paired tests against CE.

- Summary: for each experiment (data set, model and training settings), loss setting and metric, the mean
  over seeds and the t-interval :math:`\bar x \pm t_{0.975,\,n-1}\, s/\sqrt n` (NaN half-width for n = 1).
- Comparison: each non-CE setting against cross-entropy over the seeds both have (paired). The
  difference is setting − CE in accuracy points (×100). Two tests, both two-sided (scipy): the paired
  t-test (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, exact
  for small n). Degenerate cases are reported, not hidden: all differences equal to zero gives p = 1 for
  both tests; all differences equal but non-zero makes the t statistic undefined (zero variance), so the
  t-test p is NaN (never significant) and the Wilcoxon p is still computed.
- Holm (1979) step-down correction across the settings of one experiment, separately for each test:
  with the m p-values sorted :math:`p_{(1)} \le \dots \le p_{(m)}`,
  :math:`\tilde p_{(i)} = \max_{j \le i} \min(1, (m - j + 1)\, p_{(j)})`. NaN p-values stay NaN and
  do not count in m.
- Verdict: a setting *beats* cross-entropy when its mean accuracy difference is positive and its
  Holm-adjusted **paired t-test** p is below 0.05. With fewer than 6 seeds the two-sided exact Wilcoxon
  p cannot fall below 0.0625, so it is reported but not used for the verdict.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

SUMMARY_METRICS = ("accuracy", "nll", "ece")
LOSS_FIELDS = ("loss", "gamma", "smoothing", "convention", "beta")
ALPHA = 0.05


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of the t-interval over ``values`` (NaN half-width for one value).

    Example:
        >>> m, h = mean_ci([1.0, 2.0, 3.0])  # s = 1, t_{0.975,2} = 4.3027
        >>> m, round(h, 4)
        (2.0, 2.4841)
    """
    from scipy import stats

    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n == 1:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN and is not counted).

    Example:
        >>> holm([0.01, 0.04, 0.03])  # sorted 0.01, 0.03, 0.04 -> 3·0.01, 2·0.03, max(0.06, 1·0.04)
        [0.03, 0.06, 0.06]
    """
    order = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = round(running, 15)
    return out


def paired_tests(diffs: list[float]) -> tuple[float, float, str | None]:
    """Two-sided p-values (paired t-test, Wilcoxon signed-rank) of differences, and a note if degenerate.

    Example:
        >>> paired_tests([0.0, 0.0, 0.0])
        (1.0, 1.0, 'all differences are zero')
    """
    from scipy import stats

    n = len(diffs)
    if n < 2:
        return math.nan, math.nan, "fewer than 2 paired seeds"
    if all(d == 0 for d in diffs):
        return 1.0, 1.0, "all differences are zero"
    note = None
    if all(d == diffs[0] for d in diffs):
        p_t = math.nan
        note = "all differences are equal: the t statistic is undefined (zero variance)"
    else:
        p_t = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    p_w = float(stats.wilcoxon(diffs).pvalue)
    return p_t, p_w, note


@dataclass
class Comparison:
    experiment: str
    setting: str
    seeds: int
    diff_points: float  # mean accuracy difference setting − CE, ×100
    p_t: float
    p_wilcoxon: float
    p_t_holm: float = math.nan
    p_wilcoxon_holm: float = math.nan
    note: str | None = None

    @property
    def significant(self) -> bool:
        return self.diff_points > 0 and self.p_t_holm < ALPHA


@dataclass
class Analysis:
    """Everything the report shows: ``summary[experiment][setting][metric] = (mean, half-width, n)``."""

    summary: dict = field(default_factory=dict)
    comparisons: dict = field(default_factory=dict)  # experiment -> list[Comparison]
    verdicts: dict = field(default_factory=dict)  # experiment -> str
    settings: dict = field(default_factory=dict)  # experiment -> {setting: loss-fields dict}
    info: dict = field(default_factory=dict)  # experiment -> {dataset, model, num_classes}


def experiment_of(config: dict) -> tuple:
    """The config without seed and loss fields: runs with equal experiments are compared."""
    return tuple(sorted((k, v) for k, v in config.items() if k not in LOSS_FIELDS and k != "seed"))


def setting_label(config: dict) -> str:
    from labelsmooth.experiment.config import RunConfig

    return RunConfig.from_dict(config).label()


def _display(datasets: set[str]) -> dict[str, str]:
    """Each data set as the report names it: a user data set by its file name where no other shares it."""
    from labelsmooth.experiment import user_data

    short = {d: user_data.short_name(d) if user_data.is_user_name(d) else d for d in datasets}
    taken = Counter(short.values())
    return {d: s if taken[s] == 1 else d for d, s in short.items()}


def _names(experiments: list[tuple]) -> dict[tuple, str]:
    """Name each experiment by its data set, adding the model and differing fields only when needed."""
    by_ds = defaultdict(list)
    for e in experiments:
        by_ds[dict(e)["dataset"]].append(e)
    names = {}
    shown = _display(set(by_ds))
    for ds, group in by_ds.items():
        if len(group) == 1:
            names[group[0]] = shown[ds]
            continue
        varying = [k for k, _ in group[0] if len({dict(g)[k] for g in group}) > 1]
        for g in group:
            d = dict(g)
            names[g] = shown[ds] + " (" + ", ".join(f"{k}={d[k]}" for k in varying) + ")"
    return names


def analyse(runs: list[dict]) -> Analysis:
    """Summaries, paired comparisons and verdicts from store rows (only ``done`` runs count)."""
    from labelsmooth.experiment.data import info as dataset_info

    groups: dict = defaultdict(lambda: defaultdict(dict))  # experiment -> setting -> seed -> run
    settings: dict = defaultdict(dict)
    for r in runs:
        if r["status"] != "done":
            continue
        cfg = r["config"]
        exp, label = experiment_of(cfg), setting_label(cfg)
        groups[exp][label][cfg["seed"]] = r
        settings[exp][label] = {k: cfg.get(k) for k in LOSS_FIELDS}
    names = _names(sorted(groups, key=str))
    out = Analysis()
    for exp in sorted(groups, key=lambda e: names[e]):
        name = names[exp]
        d = dict(exp)
        out.info[name] = {
            "dataset": d["dataset"],
            "model": d["model"],
            "num_classes": dataset_info(d["dataset"]).num_classes,
            "config": d,
        }
        out.settings[name] = dict(sorted(settings[exp].items(), key=lambda kv: _order(kv[1])))
        out.summary[name] = {}
        for label in out.settings[name]:
            by_seed = groups[exp][label]
            out.summary[name][label] = {
                m: (*mean_ci([by_seed[s]["metrics"][m] for s in sorted(by_seed)]), len(by_seed))
                for m in SUMMARY_METRICS
            }
        comps = []
        ce = groups[exp].get("ce", {})
        for label in out.settings[name]:
            if label == "ce" or not ce:
                continue
            seeds = sorted(set(ce) & set(groups[exp][label]))
            diffs = [100 * (groups[exp][label][s]["metrics"]["accuracy"] - ce[s]["metrics"]["accuracy"]) for s in seeds]
            p_t, p_w, note = paired_tests(diffs)
            mean = sum(diffs) / len(diffs) if diffs else math.nan
            comps.append(Comparison(name, label, len(seeds), mean, p_t, p_w, note=note))
        for attr, adj in (("p_t", "p_t_holm"), ("p_wilcoxon", "p_wilcoxon_holm")):
            for c, p in zip(comps, holm([getattr(c, attr) for c in comps])):
                setattr(c, adj, p)
        out.comparisons[name] = comps
        out.verdicts[name] = verdict(name, comps)
    return out


def _order(setting: dict) -> tuple:
    rank = {"ce": 0, "ls": 1, "cp": 2}[setting["loss"]]
    g = setting.get("gamma")
    return (
        rank,
        setting.get("convention") or "",
        -(g if g is not None else -1),
        setting.get("smoothing") or 0,
        setting.get("beta") or 0,
    )


def _pretty(label: str) -> str:
    return label.replace("=", " = ")


def _p(p: float) -> str:
    return "undefined" if math.isnan(p) else (f"{p:.2g}" if p >= 0.001 else "< 0.001")


def _seeds(n: int) -> str:
    return f"{n} seed" if n == 1 else f"{n} seeds"


def verdict(name: str, comps: list[Comparison]) -> str:
    """One plain line: which setting beats cross-entropy (Holm-adjusted paired t-test p < 0.05), if any.

    Example:
        >>> c = Comparison("digits", "γ=0.9", 5, 0.41, 0.004, 0.06, p_t_holm=0.012, p_wilcoxon_holm=0.12)
        >>> verdict("digits", [c])
        'digits: γ = 0.9 beats cross-entropy by +0.41 points (p = 0.012, 5 seeds)'
    """
    if not comps:
        return f"{name}: nothing to compare (no cross-entropy runs, or no other setting)"
    wins = sorted((c for c in comps if c.significant), key=lambda c: -c.diff_points)
    if wins:
        parts = [
            f"{_pretty(c.setting)} beats cross-entropy by {c.diff_points:+.2f} points (p = {_p(c.p_t_holm)}, "
            f"{_seeds(c.seeds)})"
            for c in wins
        ]
        return f"{name}: " + "; ".join(parts)
    best = max(comps, key=lambda c: c.diff_points if not math.isnan(c.diff_points) else -math.inf)
    return (
        f"{name}: no setting beats cross-entropy significantly (best: {_pretty(best.setting)}, "
        f"{best.diff_points:+.2f} points, p = {_p(best.p_t_holm)}, {_seeds(best.seeds)})"
    )
