"""Every bad input raises before any computation, naming the argument, the rule and the value."""

from __future__ import annotations

import pytest
import torch

import labelsmooth as ls

Z = torch.randn(4, 3)
Y = torch.tensor([0, 1, 2, 1])


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(label_smoothing=-0.1), ValueError, r"`label_smoothing`.*\[0, 1\].*-0\.1"),
        (dict(label_smoothing=1.5), ValueError, r"`label_smoothing`.*1\.5"),
        (dict(label_smoothing=float("nan")), ValueError, r"`label_smoothing`.*nan"),
        (dict(label_smoothing="0.1"), TypeError, r"`label_smoothing`.*str"),
        (dict(convention="fairseq"), ValueError, r"`convention`.*'fairseq'"),
        (dict(reduction="avg"), ValueError, r"`reduction`.*'avg'"),
        (dict(weight=torch.ones(4)), ValueError, r"`weight`.*\(3,\).*\(4,\)"),
        (dict(weight=torch.ones(3, dtype=torch.long)), TypeError, r"`weight`.*floating"),
        (dict(prior=torch.ones(4) / 4), ValueError, r"`prior`.*\(3,\).*\(4,\)"),
        (dict(prior=torch.tensor([0.5, 0.6, -0.1])), ValueError, r"`prior`.*non-negative.*-0\.1"),
        (dict(prior=torch.tensor([0.5, float("nan"), 0.5])), ValueError, r"`prior`.*finite"),
        (dict(prior=torch.tensor([0.5, 0.3, 0.1])), ValueError, r"`prior`.*sum to 1.*0\.9"),
        (dict(prior=torch.tensor([1.0, 0.0, 0.0]), convention="others"), ValueError, r"`prior`.*others"),
    ],
)
def test_cross_entropy_rejects_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        ls.cross_entropy(Z, Y, **kwargs)


def test_prior_sum_tolerance_is_1e_minus_6():
    ls.cross_entropy(Z, Y, prior=torch.tensor([0.5, 0.3, 0.2 + 5e-7], dtype=torch.float64))
    with pytest.raises(ValueError, match="sum to 1"):
        ls.cross_entropy(Z, Y, prior=torch.tensor([0.5, 0.3, 0.2 + 5e-6], dtype=torch.float64))


@pytest.mark.parametrize("bad", [3, -1, -101, 100])
@pytest.mark.parametrize(
    "options", [{}, dict(label_smoothing=0.1), dict(label_smoothing=0.1, convention="others"), dict(reduction="none")]
)
def test_target_out_of_range_names_the_value(bad, options):
    y = Y.clone()
    y[2] = bad
    with pytest.raises(ValueError, match=rf"`target`.*\[0, 3\).*ignore_index=-100.*got {bad}") as caught:
        ls.cross_entropy(Z, y, **options)
    assert caught.value.__context__ is None  # our error alone, not chained to torch's IndexError


def test_target_out_of_range_on_nd_input_names_the_value():
    y = torch.zeros(2, 5, dtype=torch.long)
    y[1, 3] = 9
    with pytest.raises(ValueError, match=r"`target`.*\[0, 3\).*got 9"):
        ls.cross_entropy(torch.randn(2, 3, 5), y, label_smoothing=0.2)


def test_custom_ignore_index_is_accepted_and_others_are_not():
    y = torch.tensor([0, 7, 2, 1])
    ls.cross_entropy(Z, y, ignore_index=7)
    with pytest.raises(ValueError, match="got 7"):
        ls.cross_entropy(Z, y)


def test_integer_logits_are_a_type_error():
    with pytest.raises(TypeError, match=r"`input`.*floating-point.*torch.int64"):
        ls.cross_entropy(torch.ones(4, 3, dtype=torch.long), Y)


@pytest.mark.parametrize(
    "target,match",
    [
        (torch.tensor([0, 1, 2]), r"`target`.*shape \(4,\).*\(3,\)"),
        (torch.zeros(4, 1, dtype=torch.long), r"`target`.*shape \(4,\).*\(4, 1\)"),
        (torch.rand(4, 2), r"`target`.*probabilities.*\(4, 3\).*\(4, 2\)"),
    ],
)
def test_target_shape_must_match_input(target, match):
    with pytest.raises(ValueError, match=match):
        ls.cross_entropy(Z, target)


def test_bool_target_is_a_type_error():
    with pytest.raises(TypeError, match="`target`"):
        ls.cross_entropy(Z, torch.ones(4, dtype=torch.bool))


def test_errors_come_before_any_computation_on_nd_inputs():
    with pytest.raises(ValueError, match=r"shape \(2, 5\)"):
        ls.cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: ls.confidence_penalty(Z, -0.5), ValueError, r"`beta`.*-0\.5"),
        (lambda: ls.confidence_penalty(Z, 0.5, threshold=-1.0), ValueError, r"`threshold`.*-1\.0"),
        (lambda: ls.confidence_penalty(Z, 0.5, reduction="x"), ValueError, r"`reduction`"),
        (lambda: ls.ConfidencePenaltyLoss(beta=-1), ValueError, r"`beta`"),
        (lambda: ls.CrossEntropyLoss(label_smoothing=2.0), ValueError, r"`label_smoothing`.*2\.0"),
        (lambda: ls.CrossEntropyLoss(convention="gamma"), ValueError, r"`convention`.*'gamma'"),
        (lambda: ls.convert_smoothing(0.1, 1, "uniform", "others"), ValueError, r"`num_classes`.*>= 2.*1"),
        (lambda: ls.convert_smoothing(0.1, 10, "pytorch", "others"), ValueError, r"`source`.*'pytorch'"),
        (lambda: ls.convert_smoothing(0.1, 10, "torch", "jax"), ValueError, r"`target`.*'jax'"),
        (lambda: ls.target_distribution(Y, 1, 0.1), ValueError, r"`num_classes`"),
        (lambda: ls.target_distribution(Y, 3, 0.1, prior=torch.ones(3)), ValueError, r"`prior`.*sum"),
        (lambda: ls.target_distribution(torch.tensor([3]), 3, 0.1), ValueError, r"`target`.*got 3"),
        (lambda: ls.optimal_logit_gap(0.1, 1), ValueError, r"`num_classes`"),
        (lambda: ls.optimal_logit_gap(-0.1, 10), ValueError, r"`label_smoothing`"),
        (lambda: ls.decompose(Z, Y, 0.1, convention="x"), ValueError, r"`convention`"),
        (lambda: ls.decompose(Z, torch.tensor([0, -100, 1, 2]), 0.1), ValueError, r"`target`.*-100"),
        (lambda: ls.binary_cross_entropy_with_logits(Z, torch.rand(4, 2)), ValueError, r"`target`.*\(4, 3\)"),
        (
            lambda: ls.binary_cross_entropy_with_logits(Z, torch.rand(4, 3), label_smoothing=-1),
            ValueError,
            r"`label_smoothing`",
        ),
    ],
)
def test_other_functions_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
