"""labelsmooth.distributed: the vocab-parallel losses equal labelsmooth.cross_entropy on the full logits.

The fast tests run on one process (no process group: world size 1) and check the validation. The slow
ones start gloo on the loopback interface once per world size (1, 2, 3, unequal class slices) and run
every case in each rank (tests/distributed_workers.py); plus one DistributedDataParallel run against
single-process training on the full batch, and two checks that a failing rank is reported with its stack.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import labelsmooth
from labelsmooth.distributed import (
    global_mean_denominator,
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)
from tests import distributed_workers as workers

D = torch.float64


def _read_ranks(out_dir: Path, world_size: int) -> list[dict]:
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world_size)]


# --------------------------------------------------------------------------------------------------
# One process: the slice is the whole vocabulary


@pytest.mark.parametrize("convention", ["uniform", "others"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_single_process_equals_cross_entropy(convention, reduction):
    z = (3 * torch.randn(6, 5, dtype=D)).requires_grad_()
    y = torch.tensor([0, 4, -100, 2, 2, 1])
    prior = torch.softmax(torch.randn(5, dtype=D), 0)
    weight = torch.rand(5, dtype=D) + 0.5
    opts = dict(label_smoothing=0.2, convention=convention, reduction=reduction, prior=prior, weight=weight)
    ours = vocab_parallel_cross_entropy(z, y, **opts)
    (g_ours,) = torch.autograd.grad(ours.sum(), z)
    ref = labelsmooth.cross_entropy(z, y, **opts)
    (g_ref,) = torch.autograd.grad(ref.sum(), z)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_unbatched_and_empty_inputs_follow_cross_entropy(reduction):
    for z, y in [
        (torch.randn(5, dtype=D), torch.tensor(3)),
        (torch.randn(0, 5, dtype=D), torch.zeros(0, dtype=torch.long)),
    ]:
        ours = vocab_parallel_cross_entropy(z, y, label_smoothing=0.2, reduction=reduction)
        ref = labelsmooth.cross_entropy(z, y, label_smoothing=0.2, reduction=reduction)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("chunk_size", [1, 5, 12, None])
def test_single_process_linear_equals_linear_then_cross_entropy(chunk_size):
    h, W, b = (torch.randn(*s, dtype=D, requires_grad=True) for s in [(3, 4, 6), (9, 6), (9,)])
    y = torch.randint(0, 9, (3, 4))
    y[0, 1] = -100
    ours = vocab_parallel_linear_cross_entropy(
        h, W, y, local_bias=b, label_smoothing=0.1, reduction="none", chunk_size=chunk_size
    )
    ref = labelsmooth.cross_entropy(F.linear(h, W, b).movedim(-1, 1), y, label_smoothing=0.1, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    grads_ours = torch.autograd.grad(ours.sum(), (h, W, b))
    grads_ref = torch.autograd.grad(ref.sum(), (h, W, b))
    for a, r in zip(grads_ours, grads_ref):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


def test_float32_and_half_precision_follow_cross_entropy():
    z, y = torch.randn(4, 8), torch.tensor([1, 7, 0, 3])
    for dtype in (torch.float32, torch.bfloat16):
        ours = vocab_parallel_cross_entropy(z.to(dtype), y, label_smoothing=0.1)
        ref = labelsmooth.cross_entropy(z.to(dtype), y, label_smoothing=0.1)
        assert ours.dtype == dtype
        torch.testing.assert_close(ours, ref)


def test_global_mean_denominator_without_a_group_is_the_local_weight_sum():
    y, w = torch.tensor([2, -100, 0, 2]), torch.tensor([0.5, 1.0, 2.0], dtype=D)
    assert global_mean_denominator(y, weight=w).item() == 4.5
    assert global_mean_denominator(y).item() == 3.0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(target=torch.tensor([0, 7])), ValueError, r"`target` to hold class indices in \[0, 6\)"),
        (dict(target=torch.tensor([0.0, 1.0])), TypeError, "integer class indices"),
        (dict(prior=torch.full((5,), 0.2)), ValueError, r"`prior` to have shape \(6,\)"),
        (dict(weight=torch.ones(4)), ValueError, r"`weight` to have shape \(6,\)"),
        (dict(class_offsets=[0, 3, 6]), ValueError, "world_size \\+ 1 = 2 boundaries"),
        (dict(class_offsets=[0, 5]), ValueError, "slice of 6 classes"),
        (dict(class_offsets=[1, 7]), ValueError, "start at 0"),
        (dict(convention="fairseq"), ValueError, "`convention` to be one of"),
        (dict(label_smoothing=1.5), ValueError, "`label_smoothing` to be a number in"),
        (dict(group="not a group"), ValueError, "`group` to be None when torch.distributed is not initialised"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    args = dict(target=torch.tensor([0, 5]))
    args.update(kwargs)
    target = args.pop("target")
    with pytest.raises(error, match=match):
        vocab_parallel_cross_entropy(torch.randn(2, 6), target, **args)


def test_linear_frozen_head_gives_only_the_input_gradient():
    h, W = torch.randn(4, 3, dtype=D, requires_grad=True), torch.randn(6, 3, dtype=D)
    y = torch.tensor([0, 5, 2, 2])
    ours = vocab_parallel_linear_cross_entropy(h, W, y, label_smoothing=0.3, convention="others", chunk_size=3)
    ours.backward()
    ref_h = h.detach().clone().requires_grad_()
    labelsmooth.cross_entropy(F.linear(ref_h, W), y, label_smoothing=0.3, convention="others").backward()
    assert W.grad is None
    torch.testing.assert_close(h.grad, ref_h.grad, rtol=1e-12, atol=1e-12)


def test_linear_bad_shapes():
    h, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=r"`local_weight` to have shape \(V_local, 4\)"):
        vocab_parallel_linear_cross_entropy(h, torch.randn(5, 3), y)
    with pytest.raises(ValueError, match=r"`local_bias` to have shape \(5,\)"):
        vocab_parallel_linear_cross_entropy(h, torch.randn(5, 4), y, local_bias=torch.randn(4))
    with pytest.raises(ValueError, match=r"`target` to have shape \(3,\)"):
        vocab_parallel_linear_cross_entropy(h, torch.randn(5, 4), y[:2])
    with pytest.raises(ValueError, match="`chunk_size` to be a positive integer"):
        vocab_parallel_linear_cross_entropy(h, torch.randn(5, 4), y, chunk_size=0)


# --------------------------------------------------------------------------------------------------
# Several processes (gloo on loopback, file rendezvous), one start-up per world size


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_vocab_parallel_equals_full_logits_on_every_rank(world_size, tmp_path):
    """Both conventions, with and without prior and weight, ε = 0 and 0.3, ignored targets, every
    reduction, 2-D and 3-D logits; the linear head; loss and gradients to 1e-9 (float64)."""
    workers.spawn(workers.exactness_worker, world_size, str(tmp_path))
    ranks = _read_ranks(tmp_path, world_size)
    for r in ranks:
        # every case ran: 96 cross-entropy cases (loss, grad) and 24 linear ones (loss, 2 or 3 grads)
        assert r["checked"] == 96 * 2 + 24 * 3 + 12
        assert r["failures"] == []
    # our per-row losses and gradients are exact; the loss is the same on every rank
    pp = [r["per_partition"] for r in ranks]
    assert all(p["ours_row_max_abs_err"] < 1e-12 and p["ours_grad_max_abs_err"] < 1e-12 for p in pp)
    assert len({round(p["ours_loss"], 12) for p in pp}) == 1
    if world_size == 1:
        # Megatron's per-partition smoothing is right when one rank holds the whole vocabulary ...
        assert pp[0]["faulty_row_max_abs_err"] < 1e-12 and pp[0]["faulty_grad_max_abs_err"] < 1e-12
    else:
        # ... and wrong, and different on every rank, as soon as the vocabulary is split
        assert all(p["faulty_row_max_abs_err"] > 1e-3 for p in pp)
        assert pp[0]["faulty_grad_rel_err"] > 1e-3
        assert len({round(p["faulty_loss"], 9) for p in pp}) == world_size


@pytest.mark.slow
@pytest.mark.parametrize("world_size", [2, 3])
def test_z_loss_and_softcap_split_across_ranks_equal_the_float64_oracle(world_size, tmp_path):
    """z-loss, softcap and both, each convention, with and without prior and weights, every reduction;
    loss, z-loss part and gradient, and the linear head's loss and three gradients, to 1e-9 (float64),
    against tests/reference.py on the full logits (unequal slices, one of a single class at 3 ranks)."""
    workers.spawn(workers.terms_worker, world_size, str(tmp_path))
    for r in _read_ranks(tmp_path, world_size):
        assert r["checked"] == len(workers.TERMS) * 2 * 2 * 3 * (3 + 4)  # every case ran
        assert r["failures"] == []


@pytest.mark.slow
def test_ddp_training_matches_full_batch_training(tmp_path):
    """2 ranks, equal shards, 4 SGD steps of a 2-layer MLP (float64) against one process on the full batch.

    "mean": unweighted, nothing ignored: the per-rank mean averaged by DDP is the full-batch mean.
    "global_denominator": weights and ignored targets: W · (rank's reduction="sum") / global Σ w_y.
    "naive_weighted_mean": the per-rank weighted mean with unequal denominators: must NOT match.
    """
    workers.spawn(workers.ddp_worker, 2, str(tmp_path))
    ranks = _read_ranks(tmp_path, 2)
    for recipe in workers.DDP_RECIPES:
        reference = workers.train_reference(recipe)
        initial = [p.detach() for p in workers.ddp_model().parameters()]
        for r in ranks:
            params = [torch.tensor(p, dtype=D) for p in r[recipe]]
            moved = max(float((p - p0).abs().max()) for p, p0 in zip(params, initial))
            assert moved > 1e-2  # training did something
            err = max(float((p - q).abs().max()) for p, q in zip(params, reference))
            if recipe == "naive_weighted_mean":
                assert err > 1e-4, f"{recipe}: expected a visible error, got {err}"
            else:
                assert err < 1e-12, f"{recipe}: max |param - reference| = {err}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("raise", [r"ValueError: rank failed on purpose", r"in _fail_here"]),
        ("abort", [r"SIGABRT", r"Fatal Python error: Aborted", r"in _fail_here", r"in failing_worker"]),
    ],
)
def test_a_failing_rank_is_reported_with_its_python_stack(how, expected, tmp_path):
    """An exception or a crash (SIGABRT, as from a C++ std::terminate) in one rank fails the spawn with a
    RuntimeError that holds that rank's Python stack from its log, not only the signal's name."""
    with pytest.raises(RuntimeError, match="failing_worker failed at world size 2") as info:
        workers.spawn(workers.failing_worker, 2, str(tmp_path), how)
    message = str(info.value)
    for pattern in expected:
        assert re.search(pattern, message), f"{pattern!r} not in:\n{message}"
