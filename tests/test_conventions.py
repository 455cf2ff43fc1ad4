"""convert_smoothing and target_distribution: one soft target, many names."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

import labelsmooth as ls
from tests import reference as ref


def soft_target(value, K, setting):
    """The soft target of a setting, built by hand from its definition in each convention."""
    if setting == "gamma":
        return [value if k == 0 else (1 - value) / (K - 1) for k in range(K)]
    convention = ls.FRAMEWORKS.get(setting, setting)
    return ref.soft_target_row(0, K, value, convention, None)


NAMES = ["uniform", "others", "gamma", *ls.FRAMEWORKS]


@given(
    K=st.integers(2, 50),
    gamma=st.floats(0.0, 1.0).filter(lambda g: g < 0.999),
    source=st.sampled_from(NAMES),
    target=st.sampled_from(NAMES),
)
def test_conversion_keeps_the_soft_target_identical(K, gamma, source, target):
    gamma = 1 / K + (1 - 1 / K) * (0.001 + gamma)  # strictly inside (1/K, 1]
    gamma = min(gamma, 1.0)
    value = ls.convert_smoothing(gamma, K, "gamma", source)
    converted = ls.convert_smoothing(value, K, source, target)
    assert soft_target(converted, K, target) == pytest.approx(soft_target(value, K, source), abs=1e-12)


def test_framework_conventions_are_those_read_from_their_source():
    assert {k for k, v in ls.FRAMEWORKS.items() if v == "others"} == {"fairseq", "megatron"}
    assert {k for k, v in ls.FRAMEWORKS.items() if v == "uniform"} == {
        "torch", "keras", "timm", "optax", "huggingface", "liger", "apex",
    }  # fmt: skip


def test_known_values():
    # fairseq ε = 0.1 on K = 10 puts 0.9 on the target: torch needs ε = 0.1·10/9.
    assert ls.convert_smoothing(0.1, 10, "fairseq", "torch") == pytest.approx(1 / 9)
    assert ls.convert_smoothing(0.1, 10, "torch", "gamma") == pytest.approx(0.91)
    assert ls.convert_smoothing(0.9, 10, "gamma", "megatron") == pytest.approx(0.1)


@pytest.mark.parametrize(
    "value,K,source",
    [(0.1, 10, "gamma"), (1 / 10, 10, "gamma"), (1.0, 10, "uniform"), (0.9, 10, "others"), (0.95, 10, "fairseq")],
)
def test_settings_where_the_true_class_is_not_strictly_most_likely_are_refused(value, K, source):
    with pytest.raises(ValueError, match="most likely"):
        ls.convert_smoothing(value, K, source, "uniform")


def test_just_inside_the_boundary_is_accepted():
    assert ls.convert_smoothing(0.1 + 1e-9, 10, "gamma", "uniform") < 1


def test_negative_smoothing_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        ls.convert_smoothing(-0.1, 10, "torch", "fairseq")


@pytest.mark.parametrize("convention", ["uniform", "others"])
def test_target_distribution_rows_match_the_definition(convention):
    prior = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    y = torch.tensor([[0, 3], [2, 1]])
    q = ls.target_distribution(y, 4, 0.3, convention=convention, prior=prior)
    assert q.shape == (2, 2, 4)
    for idx in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        want = ref.soft_target_row(int(y[idx]), 4, 0.3, convention, prior.tolist())
        torch.testing.assert_close(q[idx], torch.tensor(want, dtype=torch.float64))
    torch.testing.assert_close(q.sum(-1), torch.ones(2, 2, dtype=torch.float64))


def test_cross_entropy_against_target_distribution_is_the_loss():
    z, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 5, (6,))
    prior = torch.softmax(torch.randn(5, dtype=torch.float64), 0)
    for convention in ["uniform", "others"]:
        q = ls.target_distribution(y, 5, 0.25, convention=convention, prior=prior)
        dense = -(q * torch.log_softmax(z, 1)).sum(1).mean()
        torch.testing.assert_close(
            ls.cross_entropy(z, y, label_smoothing=0.25, convention=convention, prior=prior), dense
        )
