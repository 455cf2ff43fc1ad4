"""The tests that count the test set: the two-level bootstrap, McNemar, the Wilcoxon gate, verdicts from
predictions, against scipy/statsmodels and hand computations."""

import math

import numpy as np
import pytest
from scipy import stats

from labelsmooth.experiment.config import RunConfig
from labelsmooth.experiment.stats import _per_example as per_example
from labelsmooth.experiment.stats import (
    analyse,
    bootstrap_p,
    calibration_bootstrap,
    mcnemar_exact,
    paired_bootstrap,
    wilcoxon_floor,
)


def test_one_unit_bootstrap_ci_matches_scipys_paired_percentile_bootstrap():
    rng = np.random.default_rng(0)
    b = rng.random(400) < 0.85
    a = b.copy()
    flip = rng.choice(400, 30, replace=False)
    a[flip] = ~a[flip]  # 30 discordant examples
    reps = paired_bootstrap([(a, b)], replicates=20000, seed=1)
    ours = np.percentile(reps, [2.5, 97.5])
    ref = stats.bootstrap(
        (a.astype(float), b.astype(float)), lambda x, y: np.mean(x - y), paired=True, vectorized=False,
        n_resamples=5000, method="percentile", random_state=2,
    ).confidence_interval  # fmt: skip
    assert ours == pytest.approx([ref.low, ref.high], abs=0.004)
    assert reps.mean() == pytest.approx(np.mean(a.astype(int) - b), abs=0.001)


def test_two_level_bootstrap_variance_is_the_hand_formula():
    # Units u with per-example differences d_u: Var* = (1/U)·[(1/U)·Σ(μ_u − μ̄)² + (1/U)·Σ σ_u²/n_u]
    rng = np.random.default_rng(3)
    units, mus, within = [], [], []
    for shift in (0.0, 0.04, -0.02, 0.08):
        b = rng.random(300) < 0.8
        a = np.where(rng.random(300) < 0.1 + shift, ~b, b)
        d = a.astype(float) - b
        units.append((a, b))
        mus.append(d.mean())
        within.append(d.var() / d.size)
    U = len(units)
    expected = (np.var(mus) + np.mean(within)) / U
    reps = paired_bootstrap(units, replicates=40000, seed=4)
    assert reps.var() == pytest.approx(expected, rel=0.05)
    assert reps.mean() == pytest.approx(np.mean(mus), abs=0.002)


def test_bootstrap_p_by_hand():
    assert bootstrap_p(np.array([0.1, 0.2, -0.1, 0.3])) == pytest.approx(2 * (1 + 1) / 5)
    assert bootstrap_p(np.full(99, 0.5)) == pytest.approx(2 / 100)  # never 0: (1 + 0) / (B + 1), two-sided
    assert bootstrap_p(np.zeros(10)) == 1.0


def test_mcnemar_is_the_exact_binomial_test_on_discordant_pairs():
    rng = np.random.default_rng(5)
    a, b = rng.random(200) < 0.9, rng.random(200) < 0.85
    n10, n01 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    assert mcnemar_exact(a, b) == pytest.approx(stats.binomtest(n10, n10 + n01, 0.5).pvalue)
    assert mcnemar_exact(a, a) == 1.0  # no discordant pair


def test_calibration_bootstrap_point_is_the_difference_of_the_metrics():
    rng = np.random.default_rng(6)
    z1, z2 = rng.normal(size=(500, 4)) * 3, rng.normal(size=(500, 4))
    y = rng.integers(0, 4, 500)
    e1, e2 = per_example(z1, y), per_example(z2, y)
    nll = lambda z: float(np.mean(-(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(500), y]))  # noqa: E731
    d, lo, hi = calibration_bootstrap([(e1, e2)], "nll", replicates=400)
    assert d == pytest.approx(nll(z1) - nll(z2)) and lo < d < hi
    d_ece, lo, hi = calibration_bootstrap([(e1, e2)], "ece", replicates=400)
    ece = lambda e: float(np.abs(e["ece_terms"].sum(0)).sum() / 500)  # noqa: E731
    assert d_ece == pytest.approx(ece(e1) - ece(e2)) and lo < d_ece < hi


def test_wilcoxon_is_shown_only_where_its_holm_adjusted_p_can_reach_alpha():
    assert wilcoxon_floor(3, 4) == 1.0  # 4 · 2/8: capped at 1
    assert wilcoxon_floor(5, 1) == pytest.approx(0.0625)
    assert wilcoxon_floor(8, 4) == pytest.approx(4 * 2 / 256) and wilcoxon_floor(8, 4) < 0.05
    assert stats.wilcoxon([1, 2, 3, 4, 5]).pvalue == pytest.approx(wilcoxon_floor(5, 1))


# --- verdicts from stored predictions ----------------------------------------------------------------


def _run(seed, correct, *, gamma=None, val_accuracy=0.9):
    """A final run with its test predictions: logits that put 0.9 on the label where ``correct``."""
    config = RunConfig("digits", "mlp", loss="ce" if gamma is None else "ls", gamma=gamma, seed=seed, lr=1e-3)
    y = np.arange(len(correct)) % 10
    pred = np.where(correct, y, (y + 1) % 10)
    logits = np.zeros((len(y), 10), dtype=np.float16)
    logits[np.arange(len(y)), pred] = 3.0
    acc = float(np.mean(correct))
    metrics = {"accuracy": acc, "nll": 0.3, "ece": 0.05, "ts_nll": 0.2, "ts_ece": 0.02, "temperature": 1.2,
               "val_accuracy": val_accuracy, "val_nll": 0.3}  # fmt: skip
    run = {"key": config.key(), "status": "done", "config": config.to_dict(), "metrics": metrics}
    return run, {config.key(): {"test": {"logits": logits, "labels": y}}}


def _study(arm_correct, ce_correct, seeds=3):
    runs, preds = [], {}
    for s in range(seeds):
        for gamma, correct in ((None, ce_correct(s)), (0.9, arm_correct(s))):
            r, p = _run(s, correct, gamma=gamma)
            runs.append(r)
            preds.update(p)
    return runs, preds


def test_a_zero_variance_arm_is_not_significant_unless_the_test_set_supports_it():
    # The old quick verdict's failure: +1 example on each of 3 seeds, identical every seed (± 0.00).
    base = np.arange(450) % 5 != 0  # 80% right
    one_more = base.copy()
    one_more[0] = True
    runs, preds = _study(lambda s: one_more, lambda s: base)
    a = analyse(runs, preds)
    (c,) = a.comparisons["digits"]
    assert c.diff_points == pytest.approx(100 / 450) and math.isnan(c.p_t)  # t undefined: zero variance
    assert c.p_boot_holm > 0.05 and not c.significant
    assert a.verdicts["digits"].startswith("digits: no setting beats cross-entropy significantly")
    assert c.wilcoxon_absent and "cannot go below" in c.wilcoxon_absent
    assert [p for p in c.mcnemar] == [1.0] * 3  # 1 discordant example: exact p = 1


def test_a_large_consistent_gain_is_significant_on_the_bootstrap():
    base = np.arange(450) % 5 != 0
    better = base.copy()
    better[np.flatnonzero(~base)[:40]] = True  # +40 examples per seed
    runs, preds = _study(lambda s: better, lambda s: base)
    a = analyse(runs, preds)
    (c,) = a.comparisons["digits"]
    assert c.significant and c.ci_points[0] > 0
    assert c.p_mcnemar_pooled == pytest.approx(stats.binomtest(120, 120, 0.5).pvalue)
    assert a.verdicts["digits"].startswith("digits: γ = 0.9 beats cross-entropy by +8.89 points (95% CI ")
