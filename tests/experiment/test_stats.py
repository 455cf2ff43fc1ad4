"""Sweep statistics against scipy (the reference) and against hand computations."""

import math

import pytest
from _harness_runs import stored_run
from scipy import stats

from labelsmooth.experiment.stats import analyse, holm, mean_ci, paired_tests


def test_mean_ci_is_scipys_t_interval():
    xs = [0.91, 0.93, 0.92, 0.95, 0.90]
    m, h = mean_ci(xs)
    lo, hi = stats.t.interval(0.95, len(xs) - 1, loc=sum(xs) / 5, scale=stats.sem(xs))
    assert m == pytest.approx(0.922) and m - h == pytest.approx(lo) and m + h == pytest.approx(hi)
    assert math.isnan(mean_ci([0.5])[1])


def test_paired_tests_are_scipys_ttest_rel_and_wilcoxon():
    a = [0.90, 0.92, 0.91, 0.93, 0.95]
    b = [0.89, 0.915, 0.905, 0.91, 0.93]
    diffs = [x - y for x, y in zip(a, b)]
    p_t, p_w, note = paired_tests(diffs)
    assert p_t == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert p_w == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert p_w == pytest.approx(2 / 2**5)  # all 5 differences positive: exact two-sided p = 2/2^n
    assert note is None


def test_degenerate_differences_are_reported_not_hidden():
    assert paired_tests([0.0, 0.0, 0.0]) == (1.0, 1.0, "all differences are zero")
    p_t, p_w, note = paired_tests([0.5, 0.5, 0.5])  # zero variance: t undefined
    assert math.isnan(p_t) and p_w == pytest.approx(0.25) and "undefined" in note
    assert paired_tests([0.1])[2] == "fewer than 2 paired seeds"


def test_holm_by_hand():
    # m = 4, sorted p: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04 -> max 0.06)
    assert holm([0.03, 0.005, 0.04, 0.01]) == pytest.approx([0.06, 0.02, 0.06, 0.03])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([math.nan, 0.02, 0.04])  # NaN stays NaN and does not count: m = 2
    assert math.isnan(out[0]) and out[1:] == pytest.approx([0.04, 0.04])


def _run(dataset, seed, acc, gamma=None, ece=0.05):
    return stored_run(dataset, seed, {"accuracy": acc, "nll": 0.3, "ece": ece, "logit_gap": 5.0}, gamma=gamma)


def test_analyse_pairs_by_seed_applies_holm_and_writes_verdicts():
    ce = [0.900, 0.910, 0.905, 0.895, 0.900]
    g9 = [0.910, 0.915, 0.915, 0.905, 0.906]  # clearly better on every seed
    g8 = [0.899, 0.912, 0.903, 0.896, 0.901]  # noise
    runs = [_run("fashion-mnist", s, a) for s, a in enumerate(ce)]
    runs += [_run("fashion-mnist", s, a, 0.9) for s, a in enumerate(g9)]
    runs += [_run("fashion-mnist", s, a, 0.8) for s, a in enumerate(g8)]
    runs += [_run("digits", s, a) for s, a in enumerate([0.95, 0.96, 0.97])]
    runs += [_run("digits", s, a, 0.95) for s, a in enumerate([0.951, 0.955, 0.972])]
    runs.append({**_run("digits", 9, 0.1, 0.95), "status": "failed", "metrics": None})  # ignored
    a = analyse(runs)
    comps = {c.setting: c for c in a.comparisons["fashion-mnist"]}
    p9 = stats.ttest_rel(g9, ce).pvalue
    p8 = stats.ttest_rel(g8, ce).pvalue
    lo, hi = sorted([p9, p8])
    expected = {p9: None, p8: None}
    expected[lo] = min(1, 2 * lo)
    expected[hi] = max(min(1, 2 * lo), min(1, hi))
    assert comps["γ=0.9"].p_t_holm == pytest.approx(expected[p9])
    assert comps["γ=0.8"].p_t_holm == pytest.approx(expected[p8])
    assert comps["γ=0.9"].diff_points == pytest.approx(100 * (sum(g9) - sum(ce)) / 5)
    m, h, n = a.summary["fashion-mnist"]["γ=0.9"]["accuracy"]
    assert (m, n) == (pytest.approx(sum(g9) / 5), 5) and h == pytest.approx(mean_ci(g9)[1])
    # The t-test counts only seed noise: without stored test predictions no verdict may rest on it.
    assert not comps["γ=0.9"].significant
    assert a.verdicts["fashion-mnist"] == (
        f"fashion-mnist: no verdict: the runs have no stored test predictions, so the test that counts the test "
        f"set cannot run (best: γ = 0.9, +{comps['γ=0.9'].diff_points:.2f} points, t-test p = {expected[p9]:.2g}, "
        f"5 seeds)"
    )
    d = a.comparisons["digits"][0]
    assert d.seeds == 3 and d.p_t_holm == pytest.approx(
        stats.ttest_rel([0.951, 0.955, 0.972], [0.95, 0.96, 0.97]).pvalue
    )
    assert a.verdicts["digits"].startswith("digits: no verdict: the runs have no stored test predictions")
