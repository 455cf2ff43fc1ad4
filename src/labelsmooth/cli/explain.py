"""``labelsmooth explain``: one smoothing setting seen from every angle, checked on random logits."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Show what a label-smoothing setting means: the soft target in both conventions, the equivalent value
for each framework, the NLL + KL decomposition checked on random logits, and the optimal logit gap."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("explain", help="what a smoothing setting means, in every convention", description=_DESCRIPTION)
    p.add_argument("--classes", "-K", type=int, required=True, help="number of classes K (>= 2)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--gamma", type=float, help="probability on the true class (the seed paper's γ)")
    g.add_argument("--smoothing", type=float, help="ε, in --convention's terms")
    p.add_argument("--convention", default="uniform", help="convention or framework of --smoothing (default: uniform)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random logits for the check (default: 0)")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    import labelsmooth as ls
    from labelsmooth.conventions import FRAMEWORKS

    K = args.classes
    source, value = ("gamma", args.gamma) if args.gamma is not None else (args.convention, args.smoothing)
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
        "What to pass to each framework:",
    ]
    for name, conv in FRAMEWORKS.items():
        out.append(f"  {name:<12} ({conv:<7}) label_smoothing = {eps_u if conv == 'uniform' else eps_o:.6g}")
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
