r"""Statistics of a sweep under the protocol: every setting against cross-entropy, counting both sources
of noise (the seed and the test set's sampling).

Units. A *unit* is one (re-split, seed) pair; a setting and cross-entropy are paired on the units both
have, and on the same test examples within a unit (the test part depends on the split, not the seed).
Only the *final* runs count: each seed at the hyperparameters selected on validation
(:func:`labelsmooth.experiment.tuning.finals`).

- Summary: per setting and metric, the mean over units and the half-width of the 95% t-interval
  :math:`t_{0.975,\,n-1}\, s/\sqrt n` (NaN for n = 1). This "±" is seed (and split) noise only.
- **Paired bootstrap** (the test the verdicts rest on): B = 10,000 replicates of the mean over units of the
  accuracy difference. Scheme: draw U units with replacement from the U units; within each drawn unit
  draw its n test examples with replacement, the same examples for both arms (a fresh draw for every
  drawn unit). Because a paired difference per example is −1, 0 or +1, an example draw is a multinomial
  draw of the counts of those three values, which is exact and cheap. 95% CI: the 2.5 and 97.5
  percentiles. Two-sided p: :math:`\min(1, 2\,(1 + \#\{\Delta^* \le 0\}\ \text{or}\ \#\{\Delta^* \ge 0\},
  \text{the smaller}) / (B + 1))`. With few units the unit resampling is coarse (3 units: 10 distinct
  multisets), so the CI is a little narrow for seed noise; the t-test below is shown for that reason.
- Paired t-test over units (``scipy.stats.ttest_1samp`` of the differences), as before.
- Wilcoxon signed-rank (exact): shown only where its Holm-adjusted p can reach α, i.e. when
  :math:`m\cdot 2^{1-n} < \alpha` for m settings and n units; otherwise it is left out, with the reason.
- McNemar's exact test (``statsmodels``), per unit on that unit's 2×2 table of (setting right, CE right),
  and pooled over units (the tables summed). The pooled test counts test-set noise but treats the units'
  examples as independent; it is shown, not used for verdicts.
- Holm (1979) across the settings of one experiment (the selected-on-validation arms included),
  separately for each test.
- Calibration: the difference setting − CE of NLL and ECE, raw and temperature-scaled, with a 95%
  CI from the same two-level bootstrap (B = 1,000, example weights instead of counts): the percentile
  interval shifted by the bootstrap's bias estimate, since ECE on a resample is biased upwards.
- Verdict: a setting *beats* cross-entropy when its mean difference is positive and its Holm-adjusted
  **bootstrap** p is below 0.05. Without stored predictions the bootstrap cannot run and nothing is called
  significant; a zero-variance arm (equal accuracy on every seed) is judged by the bootstrap like any other.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

SUMMARY_METRICS = ("accuracy", "nll", "ece", "ts_nll", "ts_ece", "temperature")
BOOTSTRAP = 10_000
BOOTSTRAP_CALIBRATION = 1_000
CALIBRATION_METRICS = ("nll", "ece", "ts_nll", "ts_ece")
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


def paired_bootstrap(
    units: list[tuple[np.ndarray, np.ndarray]], replicates: int = BOOTSTRAP, seed: int = 0
) -> np.ndarray:
    """Bootstrap replicates of the mean over units of the paired accuracy difference ``a − b`` (module doc).

    Args:
        units: per unit, the two arms' per-example correctness (bool or 0/1 arrays of equal length n_u,
            the same test examples in the same order).
        replicates: B.
        seed: of the NumPy generator (the replicates are reproducible).

    Returns:
        (B,) array of replicate means (fractions, not points).

    Example:
        >>> a = np.array([1, 1, 1, 0]); b = np.array([1, 0, 0, 0])
        >>> r = paired_bootstrap([(a, b)], replicates=20000)
        >>> round(float(r.mean()), 2), round(float(r.std()), 2)  # 0.5 and sqrt(0.5 · 0.5 / 4)
        (0.5, 0.25)
    """
    if not units:
        raise ValueError("Expected at least one unit to bootstrap, but got none")
    rng = np.random.default_rng(seed)
    probs, sizes = [], []
    for a, b in units:
        d = np.asarray(a, dtype=np.int8) - np.asarray(b, dtype=np.int8)
        if d.ndim != 1 or d.size == 0 or np.asarray(a).shape != np.asarray(b).shape:
            raise ValueError(
                f"Expected two equal-length 1-D correctness arrays per unit, but got {np.shape(a)}, {np.shape(b)}"
            )
        n = d.size
        probs.append([np.count_nonzero(d > 0) / n, np.count_nonzero(d < 0) / n, np.count_nonzero(d == 0) / n])
        sizes.append(n)
    U = len(units)
    drawn = rng.integers(U, size=(replicates, U))
    values = np.empty((replicates, U))
    for u in range(U):
        mask = drawn == u
        k = int(mask.sum())
        if k:
            counts = rng.multinomial(sizes[u], probs[u], size=k)
            values[mask] = (counts[:, 0] - counts[:, 1]) / sizes[u]
    return values.mean(axis=1)


def bootstrap_p(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p of "the difference is 0": 2·(1 + the smaller tail count) / (B + 1), at most 1."""
    below = int(np.count_nonzero(replicates <= 0))
    above = int(np.count_nonzero(replicates >= 0))
    return min(1.0, 2 * (1 + min(below, above)) / (len(replicates) + 1))


def _per_example(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, n_bins: int = 15) -> dict:
    """Per-example correctness, NLL, and the ECE terms (bin one-hot × (correct − confidence))."""
    z = logits.astype(np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    pred = p.argmax(axis=1)
    conf = p.max(axis=1)
    correct = pred == labels
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    terms = np.zeros((len(labels), n_bins))
    terms[np.arange(len(labels)), bins] = correct - conf
    return {"correct": correct, "nll": -logp[np.arange(len(labels)), labels], "ece_terms": terms}


def calibration_bootstrap(
    units: list[tuple[dict, dict]], metric: str, replicates: int = BOOTSTRAP_CALIBRATION, seed: int = 0
) -> tuple[float, float, float]:
    """Mean difference (a − b) of ``metric`` ("nll" or "ece", per unit) over units and its 95% bootstrap CI.

    The same two-level scheme as :func:`paired_bootstrap` (units, then each unit's examples with
    replacement, shared by both arms); an example draw is a row of multinomial weights. ``units`` hold the
    :func:`_per_example` dicts of both arms.

    ECE computed on a resample is biased upwards (binning noise adds to every |acc − conf| gap), more for a
    well-calibrated arm than for a badly calibrated one, so the plain percentile interval of a difference can
    miss the point estimate. The interval returned is the percentile interval shifted by the bootstrap's
    estimate of that bias, ``point − mean(replicates)``; for NLL, a mean, the shift is ~0.
    """
    rng = np.random.default_rng(seed)

    def stat(e: dict, w: np.ndarray) -> np.ndarray:
        n = w.sum(axis=1)
        if metric == "nll":
            return w @ e["nll"] / n
        return np.abs(w @ e["ece_terms"]).sum(axis=1) / n

    point = float(
        np.mean([stat(a, np.ones((1, len(a["nll"]))))[0] - stat(b, np.ones((1, len(b["nll"]))))[0] for a, b in units])
    )
    U = len(units)
    drawn = rng.integers(U, size=(replicates, U))
    values = np.empty((replicates, U))
    for u, (a, b) in enumerate(units):
        mask = drawn == u
        k = int(mask.sum())
        n = len(a["nll"])
        out = np.empty(k)
        for begin in range(0, k, 256):
            rows = min(256, k - begin)
            idx = rng.integers(n, size=(rows, n)) + n * np.arange(rows)[:, None]
            w = np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
            out[begin : begin + rows] = stat(a, w) - stat(b, w)
        values[mask] = out
    reps = values.mean(axis=1)
    lo, hi = np.percentile(reps, [2.5, 97.5]) + (point - reps.mean())  # bias-shifted (see the docstring)
    return point, float(lo), float(hi)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Exact McNemar p (two-sided binomial test on the discordant pairs), via ``statsmodels``.

    Example:
        >>> mcnemar_exact(np.array([1, 1, 1, 1, 1, 0]), np.array([0, 0, 0, 0, 0, 0]))  # 5 vs 0 discordant
        0.0625
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    if table[0][1] + table[1][0] == 0:
        return 1.0
    return float(mcnemar(table, exact=True).pvalue)


def wilcoxon_floor(units: int, settings: int) -> float:
    """The smallest Holm-adjusted two-sided exact Wilcoxon p that n units and m settings allow: m·2^(1−n)."""
    return min(1.0, settings * 2.0 ** (1 - units))


@dataclass
class Comparison:
    experiment: str
    setting: str
    seeds: int  # paired units (split, seed)
    diff_points: float  # mean accuracy difference setting − CE over units, ×100
    p_t: float
    p_wilcoxon: float
    p_t_holm: float = math.nan
    p_wilcoxon_holm: float = math.nan
    note: str | None = None
    ci_points: tuple[float, float] = (math.nan, math.nan)  # bootstrap 95% CI of diff_points
    p_boot: float = math.nan
    p_boot_holm: float = math.nan
    mcnemar: list = field(default_factory=list)  # per unit p
    p_mcnemar_pooled: float = math.nan
    wilcoxon_absent: str | None = None  # why the Wilcoxon test is not shown
    calibration: dict = field(default_factory=dict)  # metric -> (diff, lo, hi)
    splits: int = 1
    selected: dict | None = None  # for a selected-on-validation arm: split -> chosen setting

    @property
    def significant(self) -> bool:
        return self.diff_points > 0 and self.p_boot_holm < ALPHA


@dataclass
class Analysis:
    """Everything the report shows: ``summary[experiment][setting][metric] = (mean, half-width, n)``."""

    summary: dict = field(default_factory=dict)
    comparisons: dict = field(default_factory=dict)  # experiment -> list[Comparison]
    verdicts: dict = field(default_factory=dict)  # experiment -> str
    settings: dict = field(default_factory=dict)  # experiment -> {setting: loss-fields dict}
    info: dict = field(default_factory=dict)  # experiment -> {dataset, model, num_classes, config, ...}
    choices: dict = field(default_factory=dict)  # experiment -> {setting: {split: Choice}}
    finals: dict = field(default_factory=dict)  # experiment -> {setting: [run, ...]}
    legacy: int = 0  # runs written before the validation split (no val metrics, no predictions)


#: Fields that do not define an experiment: the seed, the split, the loss setting and the tuned fields.
NOT_EXPERIMENT = ("seed", "split", "lr", "weight_decay")


def experiment_of(config: dict) -> tuple:
    """The config without seed, split, loss and tuned fields: runs with equal experiments are compared."""
    return tuple(sorted((k, v) for k, v in config.items() if k not in LOSS_FIELDS and k not in NOT_EXPERIMENT))


def setting_label(config: dict) -> str:
    from labelsmooth.experiment.config import RunConfig

    return RunConfig.from_dict(config).label()


def _display(datasets: set[str]) -> dict[str, str]:
    """Each data set as the report names it: a user data set by its file name where no other shares it."""
    from labelsmooth.experiment import user_data

    short = {d: user_data.short_name(d) if user_data.is_user_name(d) else d for d in datasets}
    taken = Counter(short.values())
    return {d: s if taken[s] == 1 else d for d, s in short.items()}


def _natural(name: str) -> list[tuple]:
    """A sort key that orders the numbers in a name as numbers: ``train_size=4000`` before ``=16000``."""
    return [
        (0, float(part), "") if i % 2 else (1, 0.0, part) for i, part in enumerate(re.split(r"(\d+(?:\.\d+)?)", name))
    ]


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
        varying = [k for k, _ in group[0] if len({dict(g).get(k) for g in group}) > 1]
        for g in group:
            d = dict(g)
            names[g] = shown[ds] + " (" + ", ".join(f"{k}={d.get(k)}" for k in varying) + ")"
    return names


def _num_classes(dataset: str) -> int | None:
    """The class count of a built-in or user data set; None for a name this installation does not know."""
    from labelsmooth.experiment.data import info

    try:
        return info(dataset).num_classes
    except ValueError:
        return None


def _unit(r: dict) -> tuple[int, int]:
    return (r["config"].get("split", 0), r["config"]["seed"])


def _select_arm(by_setting: dict, labels: list[str], metric: str = "val_accuracy") -> dict[int, str]:
    """Per split, the setting among ``labels`` with the highest mean validation accuracy (then lower val NLL)."""
    out = {}
    splits = sorted({u[0] for lab in labels for u in by_setting[lab]})
    for split in splits:
        best = None
        for lab in labels:
            runs = [r for u, r in by_setting[lab].items() if u[0] == split]
            if not runs:
                continue
            acc = float(np.mean([r["metrics"].get(metric, math.nan) for r in runs]))
            nll = float(np.mean([r["metrics"].get("val_nll", math.nan) for r in runs]))
            key = (-acc, nll)
            if not any(math.isnan(v) for v in key) and (best is None or key < best[0]):
                best = (key, lab)
        if best is not None:
            out[split] = best[1]
    return out


def _compare(name, label, arm: dict, ce: dict, predictions, k_settings: int) -> Comparison:
    units = sorted(set(arm) & set(ce))
    diffs = [100 * (arm[u]["metrics"]["accuracy"] - ce[u]["metrics"]["accuracy"]) for u in units]
    p_t, p_w, note = paired_tests(diffs)
    mean = sum(diffs) / len(diffs) if diffs else math.nan
    c = Comparison(name, label, len(units), mean, p_t, p_w, note=note, splits=len({u[0] for u in units}))
    have = predictions is not None and all(
        "test" in predictions.get(arm[u]["key"], {}) and "test" in predictions.get(ce[u]["key"], {}) for u in units
    )
    if units and have:
        ex = {}
        for u in units:
            for r in (arm[u], ce[u]):
                if r["key"] not in ex:
                    t = predictions[r["key"]]["test"]
                    ex[r["key"]] = (
                        _per_example(t["logits"], t["labels"]),
                        _per_example(t["logits"], t["labels"], r["metrics"].get("temperature", 1.0)),
                    )
        pairs = [(ex[arm[u]["key"]][0]["correct"], ex[ce[u]["key"]][0]["correct"]) for u in units]
        reps = paired_bootstrap(pairs)
        c.ci_points = (float(100 * np.percentile(reps, 2.5)), float(100 * np.percentile(reps, 97.5)))
        c.p_boot = bootstrap_p(reps)
        c.mcnemar = [mcnemar_exact(a, b) for a, b in pairs]
        c.p_mcnemar_pooled = mcnemar_exact(np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs]))
        for metric in CALIBRATION_METRICS:
            scaled = 1 if metric.startswith("ts_") else 0
            base = metric.removeprefix("ts_")
            cal_units = [(ex[arm[u]["key"]][scaled], ex[ce[u]["key"]][scaled]) for u in units]
            c.calibration[metric] = calibration_bootstrap(cal_units, base)
    elif units:
        c.note = (c.note + "; " if c.note else "") + "no stored predictions: the bootstrap and McNemar cannot run"
    floor = wilcoxon_floor(len(units), k_settings)
    if floor >= ALPHA:
        c.wilcoxon_absent = (
            f"{len(units)} paired units and {k_settings} settings: the Holm-adjusted exact Wilcoxon p "
            f"cannot go below {floor:.2g}"
        )
        c.p_wilcoxon = math.nan
    return c


def analyse(runs: list[dict], predictions: dict | None = None) -> Analysis:
    """Summaries, paired comparisons and verdicts from store rows (module docstring).

    Args:
        runs: store rows (``Store.runs()``); only ``done`` runs count, and of those only the finals
            (each seed at the point selected on validation).
        predictions: ``Store.predictions()`` (``{key: {"test": {"logits", "labels"}, ...}}``); without
            them the bootstrap and McNemar tests are absent and no verdict is significant.
    """
    from labelsmooth.experiment.tuning import finals, group_of

    done = [r for r in runs if r["status"] == "done"]
    out = Analysis()
    out.legacy = sum(1 for r in done if "val_fraction" not in r["config"])
    final_runs, choices = finals(done)
    groups: dict = defaultdict(lambda: defaultdict(dict))  # experiment -> setting -> unit -> run
    settings: dict = defaultdict(dict)
    for r in final_runs:
        cfg = r["config"]
        exp, label = experiment_of(cfg), setting_label(cfg)
        groups[exp][label][_unit(r)] = r
        settings[exp][label] = {k: cfg.get(k) for k in LOSS_FIELDS}
    names = _names(sorted(groups, key=str))
    for exp in sorted(groups, key=lambda e: _natural(names[e])):
        name = names[exp]
        d = dict(exp)
        out.info[name] = {
            "dataset": d["dataset"],
            "model": d["model"],
            "num_classes": _num_classes(d["dataset"]),
            "config": d,
        }
        out.settings[name] = dict(sorted(settings[exp].items(), key=lambda kv: _order(kv[1])))
        out.summary[name] = {}
        out.choices[name] = {}
        out.finals[name] = {}
        for label in out.settings[name]:
            by_unit = groups[exp][label]
            out.finals[name][label] = [by_unit[u] for u in sorted(by_unit)]
            out.summary[name][label] = {
                m: (*mean_ci([by_unit[u]["metrics"][m] for u in sorted(by_unit) if m in by_unit[u]["metrics"]]),
                    sum(1 for u in by_unit if m in by_unit[u]["metrics"]))
                for m in SUMMARY_METRICS
            }  # fmt: skip
            out.choices[name][label] = {
                split: choices[group_of(next(r for u, r in sorted(by_unit.items()) if u[0] == split)["config"])]
                for split in sorted({u[0] for u in by_unit})
            }
        ce = groups[exp].get("ce", {})
        arms = [(label, groups[exp][label], None) for label in out.settings[name] if label != "ce"]
        for family, title in (("ls", "smoothing selected on validation"), ("cp", "β selected on validation")):
            labels = [lab for lab, s in out.settings[name].items() if s["loss"] == family]
            if len(labels) < 2:
                continue
            pick = _select_arm(groups[exp], labels)
            arm = {u: groups[exp][pick[u[0]]][u] for lab in labels for u in groups[exp][lab] if pick.get(u[0]) == lab}
            arms.append((title, arm, pick))
        comps = []
        if ce:
            for label, arm, pick in arms:
                c = _compare(name, label, arm, ce, predictions, len(arms))
                c.selected = pick
                comps.append(c)
        for attr, adj in (("p_t", "p_t_holm"), ("p_wilcoxon", "p_wilcoxon_holm"), ("p_boot", "p_boot_holm")):
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


def _p_eq(p: float) -> str:
    """ "p = 0.012", "p < 0.001" or "p undefined"."""
    text = _p(p)
    return f"p {text}" if text.startswith("<") or text == "undefined" else f"p = {text}"


def _units(c: Comparison) -> str:
    seeds = c.seeds // max(1, c.splits)
    s = f"{seeds} seed" if seeds == 1 else f"{seeds} seeds"
    return s if c.splits <= 1 else f"{s} × {c.splits} splits"


def verdict(name: str, comps: list[Comparison]) -> str:
    """One plain line: which setting beats cross-entropy (Holm-adjusted paired bootstrap p < 0.05), if any.

    Example:
        >>> c = Comparison("digits", "γ=0.9", 5, 0.41, 0.004, 0.06, p_t_holm=0.012, ci_points=(0.1, 0.7),
        ...                p_boot=0.002, p_boot_holm=0.004)
        >>> verdict("digits", [c])
        'digits: γ = 0.9 beats cross-entropy by +0.41 points (95% CI +0.10 to +0.70, bootstrap p = 0.004, 5 seeds)'
    """
    if not comps:
        return f"{name}: nothing to compare (no cross-entropy runs, or no other setting)"
    wins = sorted((c for c in comps if c.significant), key=lambda c: -c.diff_points)
    if wins:
        parts = [
            f"{_pretty(c.setting)} beats cross-entropy by {c.diff_points:+.2f} points "
            f"(95% CI {c.ci_points[0]:+.2f} to {c.ci_points[1]:+.2f}, bootstrap {_p_eq(c.p_boot_holm)}, {_units(c)})"
            for c in wins
        ]
        return f"{name}: " + "; ".join(parts)
    if all(math.isnan(c.p_boot) for c in comps):
        best = max(comps, key=lambda c: c.diff_points if not math.isnan(c.diff_points) else -math.inf)
        return (
            f"{name}: no verdict: the runs have no stored test predictions, so the test that counts the test set "
            f"cannot run (best: {_pretty(best.setting)}, {best.diff_points:+.2f} points, t-test "
            f"{_p_eq(best.p_t_holm)}, {_units(best)})"
        )
    best = max(comps, key=lambda c: c.diff_points if not math.isnan(c.diff_points) else -math.inf)
    return (
        f"{name}: no setting beats cross-entropy significantly (best: {_pretty(best.setting)}, "
        f"{best.diff_points:+.2f} points, 95% CI {best.ci_points[0]:+.2f} to {best.ci_points[1]:+.2f}, "
        f"bootstrap {_p_eq(best.p_boot_holm)}, {_units(best)})"
    )
