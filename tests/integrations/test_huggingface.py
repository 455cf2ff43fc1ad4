"""The Hugging Face integration: loss_func for the Trainer, patch() for causal LMs, the full-logits trap.

Models are tiny and randomly initialised from configs (no download). The Trainer's own LabelSmoother
(transformers/trainer_pt_utils.py) is the reference where we claim equality; it sums its smoothing term in
float32 whatever the logits' dtype, hence the float32-level tolerances even in float64.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers.trainer_pt_utils import LabelSmoother  # noqa: E402

import labelsmooth as ls  # noqa: E402
from labelsmooth.integrations import huggingface as hf  # noqa: E402
from tests import reference as ref  # noqa: E402
from tests.integrations._memory import LargestOutput, peak_allocated_bytes  # noqa: E402

V = 257  # deliberately odd


def tiny_config(family: str, vocab: int = V):
    if family == "llama":
        return transformers.LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64,
        )  # fmt: skip
    if family == "qwen2":
        return transformers.Qwen2Config(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64,
        )  # fmt: skip
    return transformers.GPT2Config(
        vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=64, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip


def tiny_model(family: str = "llama", vocab: int = V, seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    return transformers.AutoModelForCausalLM.from_config(tiny_config(family, vocab)).to(dtype)


def batch(B: int = 3, S: int = 10, vocab: int = V, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (B, S), generator=g)
    labels = ids.clone()
    labels[0, :4] = -100  # a prompt that is not trained on
    labels[1, -2:] = -100  # padding at the end
    return ids, labels


def grads(model):
    return [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


def assert_close_lists(a, b, rtol, atol):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------------------- loss_func


@pytest.mark.parametrize("num_items", [None, 23])
def test_loss_func_equals_the_trainers_label_smoother_value_and_gradient(num_items):
    model = tiny_model().double()
    ids, labels = batch()
    out = model(input_ids=ids)
    theirs = LabelSmoother(epsilon=0.1)(out, labels, shift_labels=True, num_items_in_batch=num_items)
    theirs.backward()
    g_theirs = grads(model)
    model.zero_grad()
    out = model(input_ids=ids)
    ours = hf.loss_func(label_smoothing=0.1)(out, labels, num_items_in_batch=num_items)
    ours.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0)
    assert_close_lists(grads(model), g_theirs, rtol=1e-5, atol=1e-7)


def test_loss_func_is_the_float64_reference_sum_over_num_items_in_batch():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 6, 7, dtype=torch.float64, generator=g)
    labels = torch.randint(0, 7, (2, 6), generator=g)
    labels[1, 2] = -100
    prior = torch.softmax(torch.randn(7, dtype=torch.float64, generator=g), 0)
    fn = hf.loss_func(label_smoothing=0.2, convention="others", prior=prior)
    z, y = logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1)
    expected = ref.cross_entropy(z, y, eps=0.2, convention="others", prior=prior, reduction="sum")
    torch.testing.assert_close(fn({"logits": logits}, labels, num_items_in_batch=31), expected / 31, rtol=1e-12, atol=0)
    n_active = int(y.ne(-100).sum())
    torch.testing.assert_close(fn({"logits": logits}, labels), expected / n_active, rtol=1e-12, atol=0)


def test_loss_func_without_shift_for_models_whose_labels_align_with_the_logits():
    logits = torch.randn(4, 5, dtype=torch.float64)
    labels = torch.tensor([0, 4, -100, 2])
    got = hf.loss_func(0.1, shift_labels=False)({"logits": logits}, labels)
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(logits, labels, label_smoothing=0.1))


def test_loss_func_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="label_smoothing"):
        hf.loss_func(label_smoothing=1.5)
    with pytest.raises(ValueError, match="convention"):
        hf.loss_func(label_smoothing=0.1, convention="fairseq-ish")
    with pytest.raises(TypeError, match="unknown loss keyword.*z_los"):
        hf.loss_func(label_smoothing=0.1, z_los=1e-4)
    with pytest.raises(TypeError, match="`reduction` is set by loss_func"):
        hf.loss_func(label_smoothing=0.1, reduction="none")
    fn = hf.loss_func(0.1)
    with pytest.raises(ValueError, match="`outputs` to carry the logits"):
        fn({"loss": torch.tensor(1.0)}, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="`labels`"):
        fn({"logits": torch.randn(2, 3, 5)}, None)
    with pytest.raises(ValueError, match=r"`labels` to have shape \(2, 2\)"):
        fn({"logits": torch.randn(2, 3, 5)}, torch.zeros(2, 4, dtype=torch.long))


# ------------------------------------------------------------------------------------------------ patch


@pytest.mark.parametrize("family, num_items", [("llama", None), ("llama", 19), ("qwen2", 19), ("gpt2", 19)])
def test_patched_loss_and_gradients_equal_the_unpatched_model_with_the_trainers_smoother(family, num_items):
    ids, labels = batch()
    plain = tiny_model(family).double()
    out = plain(input_ids=ids)
    LabelSmoother(epsilon=0.1)(out, labels, shift_labels=True, num_items_in_batch=num_items).backward()
    expected = LabelSmoother(epsilon=0.1)(out, labels, shift_labels=True, num_items_in_batch=num_items).detach()
    patched = hf.patch(tiny_model(family).double(), label_smoothing=0.1, chunk_size=7).train()
    got = patched(input_ids=ids, labels=labels, num_items_in_batch=num_items)
    assert got.logits is None
    got.loss.backward()
    torch.testing.assert_close(got.loss.detach(), expected, rtol=1e-6, atol=0)
    assert_close_lists(grads(patched), grads(plain), rtol=1e-5, atol=1e-7)


def test_patched_others_convention_and_prior_equal_loss_func_on_the_full_logits():
    ids, labels = batch()
    prior = torch.softmax(torch.randn(V, dtype=torch.float64), 0)
    plain = tiny_model().double()
    fn = hf.loss_func(label_smoothing=0.2, convention="others", prior=prior)
    expected = fn(plain(input_ids=ids), labels, num_items_in_batch=20)
    expected.backward()
    patched = hf.patch(tiny_model().double(), label_smoothing=0.2, convention="others", prior=prior).train()
    got = patched(input_ids=ids, labels=labels, num_items_in_batch=20).loss
    got.backward()
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=0)
    assert_close_lists(grads(patched), grads(plain), rtol=1e-9, atol=1e-12)


def test_patched_model_out_of_training_returns_logits_and_the_same_smoothed_loss():
    ids, labels = batch()
    model = hf.patch(tiny_model().double(), label_smoothing=0.1)
    train_loss = model.train()(input_ids=ids, labels=labels).loss
    out = model.eval()(input_ids=ids, labels=labels)
    assert out.logits.shape == (*ids.shape, V)
    torch.testing.assert_close(out.loss, train_loss, rtol=1e-10, atol=0)
    torch.testing.assert_close(out.loss, hf.loss_func(0.1)(out, labels), rtol=1e-12, atol=0)
    no_labels = model(input_ids=ids)
    assert no_labels.loss is None and no_labels.logits.shape == (*ids.shape, V)


def test_pre_shifted_labels_from_a_collator_are_used_as_given():
    ids, labels = batch()
    model = hf.patch(tiny_model().double(), label_smoothing=0.1).train()
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    a = model(input_ids=ids, labels=labels).loss
    b = model(input_ids=ids, shift_labels=shifted).loss
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_patch_refuses_what_it_cannot_do_exactly():
    class NotAnLM(torch.nn.Module):
        pass

    with pytest.raises(TypeError, match="model_or_trainer"):
        hf.patch(object())
    with pytest.raises(ValueError, match="model_type"):
        hf.patch(NotAnLM())
    with pytest.raises(ValueError, match="label_smoothing"):
        hf.patch(tiny_model(), label_smoothing=-0.1)
    with pytest.raises(ValueError, match=r"`prior` to be a tensor of shape \(257,\)"):
        hf.patch(tiny_model(), label_smoothing=0.1, prior=torch.full((10,), 0.1))
    with pytest.raises(TypeError, match="unknown loss keyword"):
        hf.patch(tiny_model(), label_smoothing=0.1, chunksize=8)


def test_patch_twice_replaces_the_settings_and_unpatch_restores_the_model():
    ids, labels = batch()
    model = tiny_model().double().train()
    plain = model(input_ids=ids, labels=labels).loss  # the model's own loss (in float32): no smoothing
    hf.patch(model, label_smoothing=0.3)
    hf.patch(model, label_smoothing=0.0)
    got = model(input_ids=ids, labels=labels).loss
    torch.testing.assert_close(got, plain.double(), rtol=1e-6, atol=0, check_dtype=False)
    hf.unpatch(model)
    assert model(input_ids=ids, labels=labels).logits is not None


def test_patched_forward_without_labels_in_training_warns_about_the_trap_once():
    model = hf.patch(tiny_model(), label_smoothing=0.1).train()
    ids, _ = batch()
    with pytest.warns(UserWarning, match=r"patch\(trainer\)"):
        assert model(input_ids=ids).logits.shape == (*ids.shape, V)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(input_ids=ids)


def test_patched_training_step_needs_less_peak_memory_than_the_full_logits(capsys):
    # Memory: torch.profiler's CPU allocation records (tests/integrations/_memory.py), peak live bytes.
    vocab, B, S = 4096, 4, 64
    ids = torch.randint(0, vocab, (B, S))
    logits_bytes = B * S * vocab * 4

    plain = tiny_model(vocab=vocab)
    fn = hf.loss_func(0.1)
    unpatched = peak_allocated_bytes(lambda: fn(plain(input_ids=ids), ids).backward())
    patched_model = hf.patch(tiny_model(vocab=vocab), label_smoothing=0.1, chunk_size=32).train()
    patched = peak_allocated_bytes(lambda: patched_model(input_ids=ids, labels=ids).loss.backward())
    with capsys.disabled():
        print(
            f"\n[peak CPU memory, fwd+bwd, Llama 2×32, V={vocab}, {B}×{S} tokens] unpatched {unpatched / 2**20:.2f} MiB, "
            f"patched {patched / 2**20:.2f} MiB (logits alone {logits_bytes / 2**20:.2f} MiB)"
        )
    assert unpatched > 2 * logits_bytes  # positive control: the full logits (and their gradient) are there
    assert patched < unpatched - 1.5 * logits_bytes


# ------------------------------------------------------------------------------------------ the Trainer


def _dataset(n: int, S: int = 12, vocab: int = V, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (S,), generator=g)
        labels = ids.clone()
        labels[: int(torch.randint(0, S - 2, (1,), generator=g))] = -100  # uneven token counts per row
        rows.append({"input_ids": ids, "labels": labels, "attention_mask": torch.ones(S, dtype=torch.long)})
    return rows


def _train(
    tmp_path, model, *, per_device, accumulation, steps=2, factor=0.0, compute_loss_func=None, fix=None, mode=None, S=12
):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / f"run{per_device}x{accumulation}"), per_device_train_batch_size=per_device,
        gradient_accumulation_steps=accumulation, max_steps=steps, learning_rate=0.5, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, optim="sgd", logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        label_smoothing_factor=factor, disable_tqdm=True, dataloader_num_workers=0,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=_dataset(per_device * accumulation * steps, S=S, vocab=model.config.vocab_size),
        compute_loss_func=compute_loss_func,
    )  # fmt: skip
    if fix is not None:
        fix(trainer)
    if mode is None:
        trainer.train()
    else:
        with mode:
            trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == steps
    return losses, [p.detach().clone() for p in model.parameters()]


@pytest.mark.slow
def test_loss_func_in_the_trainer_equals_label_smoothing_factor_with_and_without_accumulation(tmp_path):
    ref_losses, ref_params = _train(tmp_path, tiny_model(), per_device=4, accumulation=1, factor=0.1)
    for accumulation, fn_or_factor in [(2, "factor"), (2, "loss_func")]:
        kw = {"factor": 0.1} if fn_or_factor == "factor" else {"compute_loss_func": hf.loss_func(0.1)}
        losses, params = _train(tmp_path / fn_or_factor, tiny_model(), per_device=2, accumulation=accumulation, **kw)
        assert losses == pytest.approx(ref_losses, rel=1e-5), fn_or_factor
        assert_close_lists(params, ref_params, rtol=1e-4, atol=1e-5)

    # Negative control, the bug of transformers#46731: a per-micro-batch mean that ignores num_items_in_batch
    # inflates the accumulated gradient (here about 2×), and the check above would see it.
    def ignores_num_items(outputs, labels, num_items_in_batch=None):
        return hf.loss_func(0.1)(outputs, labels)

    losses, params = _train(
        tmp_path / "bug", tiny_model(), per_device=2, accumulation=2, compute_loss_func=ignores_num_items
    )
    assert losses[0] == pytest.approx(2 * ref_losses[0], rel=0.1)
    assert max((a - b).abs().max().item() for a, b in zip(params, ref_params)) > 1e-3


@pytest.mark.slow
def test_trap_closed_patched_trainer_with_label_smoothing_factor_never_builds_the_logits(tmp_path):
    per_device, S, vocab, hidden = 2, 48, 2048, 32
    tokens = per_device * (S - 1)
    assert tokens > hidden  # so that the (V, D) weight and its gradient are smaller than (tokens, V) logits

    # Positive control: the Trainer's own label smoothing builds (batch, S, V) logits.
    seen = LargestOutput()
    ref_losses, ref_params = _train(
        tmp_path / "plain",
        tiny_model(vocab=vocab),
        per_device=2 * per_device,
        accumulation=1,
        factor=0.1,
        mode=seen,
        S=S,
    )
    assert seen.numel >= tokens * vocab and seen.shape[-1] == vocab

    # Patched, with label_smoothing_factor and accumulation over two micro-batches of half the size.
    seen = LargestOutput()
    losses, params = _train(
        tmp_path / "patched", tiny_model(vocab=vocab), per_device=per_device, accumulation=2, factor=0.1,
        fix=lambda trainer: hf.patch(trainer, chunk_size=4), mode=seen, S=S,
    )  # fmt: skip
    assert seen.numel < tokens * vocab, f"{seen.op} made a tensor of shape {seen.shape}"
    assert losses == pytest.approx(ref_losses, rel=1e-5)
    assert_close_lists(params, ref_params, rtol=1e-4, atol=1e-5)


def test_patch_trainer_moves_the_smoothing_into_the_model_and_refuses_conflicts(tmp_path):
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), label_smoothing_factor=0.1, report_to=[], use_cpu=True, save_strategy="no"
    )
    trainer = transformers.Trainer(model=tiny_model(), args=args)
    assert trainer.label_smoother is not None
    with pytest.raises(ValueError, match="label_smoothing_factor=0.1"):
        hf.patch(trainer, label_smoothing=0.2)
    with pytest.raises(ValueError, match="label_smoothing_factor=0.1"):
        hf.patch(trainer, label_smoothing=0.1, convention="others")
    assert hf.patch(trainer) is trainer
    assert trainer.label_smoother is None
    settings = getattr(trainer.model, hf._LOSS_ATTR)
    assert (settings.label_smoothing, settings.convention) == (0.1, "uniform")

    with_fn = transformers.Trainer(model=tiny_model(), args=args, compute_loss_func=hf.loss_func(0.1))
    with pytest.raises(ValueError, match="compute_loss_func"):
        hf.patch(with_fn)


def test_the_library_core_imports_no_integration_framework():
    import subprocess
    import sys

    frameworks = ("transformers", "accelerate", "torchtune", "torchao", "pytorch_lightning", "lightning")
    code = (
        "import sys, labelsmooth, labelsmooth.integrations; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {frameworks!r}))"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src}  # this checkout's source, whatever is installed
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"
    assert ls.__name__ == "labelsmooth"


def test_a_deep_copy_of_a_patched_model_is_patched_and_uses_its_own_weights():
    import copy

    ids, labels = batch()
    model = hf.patch(tiny_model().double(), label_smoothing=0.1).train()
    twin = copy.deepcopy(model)  # as a reference model is made in RL and distillation set-ups
    with torch.no_grad():
        twin.lm_head.weight.mul_(2.0)
    a, b = model(input_ids=ids, labels=labels), twin(input_ids=ids, labels=labels)
    assert a.logits is None and b.logits is None and not torch.allclose(a.loss, b.loss)
    b.loss.backward()
    assert model.lm_head.weight.grad is None and twin.lm_head.weight.grad is not None
    expected = hf.loss_func(0.1)(hf.unpatch(twin).eval()(input_ids=ids), labels)
    torch.testing.assert_close(b.loss, expected, rtol=1e-10, atol=0)


def test_return_dict_false_gives_a_tuple_with_the_loss_first():
    ids, labels = batch()
    model = hf.patch(tiny_model().double(), label_smoothing=0.1).train()
    out = model(input_ids=ids, labels=labels, return_dict=False)
    assert isinstance(out, tuple)
    torch.testing.assert_close(out[0], model(input_ids=ids, labels=labels).loss, rtol=1e-12, atol=0)


def test_a_batch_with_every_label_ignored_gives_zero_and_zero_gradients_not_nan():
    ids, _ = batch()
    labels = torch.full_like(ids, -100)
    model = hf.patch(tiny_model().double(), label_smoothing=0.1).train()
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.isfinite(g).all() and not g.any() for g in grads(model))
    logits = torch.randn(2, 4, 9, requires_grad=True)
    loss = hf.loss_func(0.1)({"logits": logits}, torch.full((2, 4), -100))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_loss_keywords_the_losses_gain_later_pass_through_unchanged(monkeypatch):
    # Stand-ins for losses that have gained a keyword (issue 18 adds z_loss= and softcap=): the integration
    # checks keywords against the installed signature and forwards them, with no list of its own.
    seen = []

    def with_z_loss(fn):
        def wrapper(*args, z_loss=0.0, **kwargs):
            seen.append((fn.__name__, z_loss))
            return fn(*args, **kwargs)

        wrapper.__name__ = fn.__name__
        return wrapper

    monkeypatch.setattr(ls, "linear_cross_entropy", with_z_loss(ls.linear_cross_entropy))
    monkeypatch.setattr(ls, "cross_entropy", with_z_loss(ls.cross_entropy))
    ids, labels = batch()
    model = hf.patch(tiny_model(), label_smoothing=0.1, z_loss=1e-4).train()
    model(input_ids=ids, labels=labels)
    hf.loss_func(0.1, z_loss=2e-4)(model.eval()(input_ids=ids), labels)
    assert ("linear_cross_entropy", 1e-4) in seen and ("cross_entropy", 2e-4) in seen
