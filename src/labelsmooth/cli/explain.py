"""``labelsmooth explain``: one smoothing setting seen from every angle, checked on random logits."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Show what a label-smoothing setting means: the soft target in both conventions, the equivalent value
for each framework and how that framework normalises its loss, the NLL + KL decomposition checked on
random logits, and the optimal logit gap."""

#: How each framework of labelsmooth.FRAMEWORKS names its setting and normalises the loss (read from
#: their code; docs/integrations.md has the table with sources).
NORMALISATION: dict[str, tuple[str, str]] = {
    "torch": ("F.cross_entropy(label_smoothing=)", "mean over non-ignored targets (Σ w[y] with class weights)"),
    "keras": ("CategoricalCrossentropy(label_smoothing=)", "mean over the batch; the sparse loss has no smoothing"),
    "timm": ("--smoothing / LabelSmoothingCrossEntropy", "mean over the batch; no ignore_index or weights"),
    "optax": ("smooth_labels(labels, alpha)", "per example; you take the mean"),
    "huggingface": (
        "TrainingArguments(label_smoothing_factor=)",
        "NLL ÷ tokens, smoothing sum ÷ (tokens × K); tokens = num_items_in_batch under accumulation",
    ),
    "liger": ("LigerCrossEntropyLoss(label_smoothing=)", "mean over non-ignored tokens"),
    "apex": ("xentropy.SoftmaxCrossEntropyLoss.apply(..., smoothing, ...)", "per row; you reduce"),
    "fairseq": ("--label-smoothing", "sum over tokens; the trainer divides by sample_size (non-pad tokens)"),
    "megatron": ("--label-smoothing", "per token, masked mean in the training loop; wrong at TP > 1"),
}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("explain", help="what a smoothing setting means, in every convention", description=_DESCRIPTION)
    p.add_argument("--classes", "-K", type=int, required=True, help="number of classes K (>= 2)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--gamma", type=float, help="probability on the true class (the seed paper's γ)")
    g.add_argument("--smoothing", type=float, help="ε, in --convention's terms")
    p.add_argument("--convention", default=None, help="convention or framework of --smoothing (default: uniform)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random logits for the check (default: 0)")
    return p


def _check(args: argparse.Namespace) -> tuple[str, float]:
    """The setting as (source, value), or a CLIError naming the flag, the rule and the value received."""
    import math

    from labelsmooth.cli import CLIError
    from labelsmooth.conventions import SETTINGS, canonical_setting

    K = args.classes
    if K < 2:
        raise CLIError(f"--classes must be an integer >= 2 (the number of classes K), but got {K}")
    if args.gamma is not None:
        if args.convention is not None:
            raise CLIError(
                f"--convention applies to --smoothing, not to --gamma, but got --convention {args.convention}"
            )
        g = args.gamma
        if math.isnan(g) or not 1.0 / K < g <= 1.0:
            raise CLIError(
                f"--gamma (the probability on the true class) must be in (1/K, 1] = ({1.0 / K:.6g}, 1] for --classes {K} "
                f"so that the true class stays the most likely, but got {g:g}"
            )
        return "gamma", g
    convention = "uniform" if args.convention is None else args.convention
    if convention not in SETTINGS or convention == "gamma":
        choices = [c for c in SETTINGS if c != "gamma"]
        raise CLIError(f"--convention must be one of {choices} (use --gamma for γ), but got {convention!r}")
    eps = args.smoothing
    limit = 1.0 if canonical_setting(convention, "--convention") == "uniform" else (K - 1) / K
    if math.isnan(eps) or not 0.0 <= eps < limit:
        raise CLIError(
            f"--smoothing must be in [0, {limit:.6g}) for --convention {convention} and --classes {K}, so that the true "
            f"class stays strictly the most likely, but got {eps:g}"
        )
    return convention, eps


def run(args: argparse.Namespace) -> int:
    import torch

    import labelsmooth as ls
    from labelsmooth.conventions import FRAMEWORKS

    K = args.classes
    source, value = _check(args)
    eps_u = ls.convert_smoothing(value, K, source, "uniform")
    eps_o = ls.convert_smoothing(value, K, source, "others")
    gamma = ls.convert_smoothing(value, K, source, "gamma")
    out = [f"Label smoothing with K = {K} classes, given as {source} = {value:g}", ""]
    out += [
        "Soft target q (the same in every convention):",
        f"  true class      γ = {gamma:.6g}",
        f"  each other      (1 − γ)/(K − 1) = {(1 - gamma) / (K - 1):.6g}",
        "",
        "The same target in each convention:",
        f"  uniform  q = (1 − ε)·onehot + ε/K        ε = {eps_u:.6g}",
        f"  others   q = 1 − ε on y, ε/(K − 1) else  ε = {eps_o:.6g}",
        f"  gamma    the seed paper's γ               γ = {gamma:.6g}",
        "",
        "What to pass to each framework, and how it normalises the loss (docs/integrations.md):",
    ]
    for name, conv in FRAMEWORKS.items():
        out.append(f"  {name:<12} ({conv:<7}) label_smoothing = {eps_u if conv == 'uniform' else eps_o:.6g}")
        if name in NORMALISATION:
            setting, norm = NORMALISATION[name]
            out.append(f"      {setting}: {norm}")
    gen = torch.Generator().manual_seed(args.seed)
    z = torch.randn(64, K, generator=gen, dtype=torch.float64) * 3
    y = torch.randint(0, K, (64,), generator=gen)
    d = ls.decompose(z, y, eps_u)
    ce = ls.cross_entropy(z, y, label_smoothing=eps_u)
    plus = (1 - eps_u) * d.nll + eps_u * (d.kl + d.prior_entropy)
    minus = (1 - eps_u) * d.nll + eps_u * (-d.kl + d.prior_entropy)
    out += [
        "",
        "Decomposition on 64 random rows of logits (float64):",
        "  H(q, p) = (1 − ε)·NLL + ε·(KL(u‖p) + log K)",
        f"  NLL = {d.nll.item():.6f}   KL(u‖p) = {d.kl.item():.6f}   log K = {d.prior_entropy.item():.6f}",
        f"  cross_entropy(label_smoothing={eps_u:.6g})  = {ce.item():.12f}",
        f"  with +KL (correct)                = {plus.item():.12f}   difference {abs(plus - ce).item():.1e}",
        f"  with −KL (Pereyra et al. §3.2)    = {minus.item():.12f}   difference {abs(minus - ce).item():.1e}",
        "  The printed minus sign is a typo: label smoothing adds ε/(1 − ε)·KL(u‖p) to the (1 − ε)-scaled NLL.",
        "",
        "Optimal logits (the minimiser has p = q):",
        f"  z_y − z_k = log(1 + K(1 − ε)/ε) = {ls.optimal_logit_gap(eps_u, K):.6g}"
        + ("   (no smoothing: unbounded)" if eps_u == 0 else ""),
    ]
    print("\n".join(out))
    return 0
