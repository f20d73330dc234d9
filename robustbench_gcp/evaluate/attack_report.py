"""Checks that a robustness evaluation can be trusted, in the spirit of AutoAttack's own flags.

Each flag names what was seen, what it usually means and what to do. Model checks run on one
batch of clean images; run checks read the stored per-sample flags of the cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..attacks import ATTACKS, epsilon_value
from ..attacks.autoattack import VERSIONS, WHITE_BOX
from ..results import Cell
from ..summaries import CLEAN, unpack_flags

BLACK_BOX_SHARE = 0.002  # AutoAttack's own threshold: Square may add up to 0.2 % of the samples
LARGE_LINF = 0.25  # at L∞ ε ≥ 64/255 any image classifier can be driven to ~0 % robust accuracy
NEAR_ZERO = 1.0  # percent


@dataclass(frozen=True)
class Flag:
    name: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def _margin(logits: Tensor, labels: Tensor) -> Tensor:
    """The best other logit minus the true one: unlike the cross-entropy, whose gradient underflows
    to exactly 0 on a confidently right image, it has a gradient wherever the model has one."""
    true = logits.gather(1, labels[:, None])[:, 0]
    other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    return other - true


def model_flags(model: nn.Module, images: Tensor, labels: Tensor) -> list[Flag]:
    """Randomised outputs, probabilities instead of logits, and zero or non-finite input gradients."""
    flags = []
    x = images.clone().requires_grad_(True)
    with torch.enable_grad():
        first = model(x).float()
        try:
            (gradient,) = torch.autograd.grad(_margin(first, labels).sum(), x)
        except RuntimeError:  # the output does not depend differentiably on the input at all
            gradient = torch.zeros_like(x)
    with torch.no_grad():
        second = model(images).float()
    if not torch.allclose(first.detach(), second, rtol=1e-4, atol=1e-5):
        flags.append(Flag("randomized", "two forward passes on the same images give different outputs: the model "
                          "is randomised, so one attack pass can miss what an expectation over its randomness finds; "
                          "evaluate with autoattack-rand (EoT over 20 gradients) and report that"))
    outputs = first.detach()
    if bool(outputs.min() >= 0) and bool(outputs.max() <= 1) and bool(((outputs.sum(1) - 1).abs() < 1e-4).all()):
        flags.append(Flag("probabilities", "the model's outputs are probabilities, not logits: the cross-entropy of "
                          "a softmax saturates and its gradients vanish, which weakens gradient attacks; return "
                          "the logits (drop the final softmax) for the evaluation"))
    per_sample = gradient.flatten(1).abs().sum(1)
    if not bool(torch.isfinite(gradient).all()) or bool((per_sample == 0).any()):
        share = float((~torch.isfinite(per_sample) | (per_sample == 0)).float().mean()) * 100
        flags.append(Flag("zero_gradients", f"{share:.0f} % of the checked images have zero or non-finite input "
                          "gradients: gradient attacks learn nothing there, so robust accuracy is overstated "
                          "(gradient masking); compare with a black-box attack (--attacks square, the last "
                          "stage of autoattack) and look for non-differentiable or saturating layers"))
    return flags


def _norm(cell: str, norm: str) -> str:
    return ATTACKS[cell].norm if cell in ATTACKS else norm


def _white_box(cell: str) -> bool:
    return cell in ATTACKS or cell.rsplit("/", 1)[-1] in WHITE_BOX


def run_flags(summary: Mapping, cells: Mapping[tuple[str, str], Cell], size: int, norm: str) -> list[Flag]:
    """Black-box beating white-box attacks, robust accuracy rising with ε, and robust accuracy
    far from 0 at a large ε, from a run's cells over ``size`` samples."""
    flags = []
    levels = sorted({level for name, level in cells if (name, level) != CLEAN},
                    key=epsilon_value)

    def robust(name: str, level: str) -> np.ndarray:
        return unpack_flags(cells[name, level].mask)[:size]

    for level in levels:
        broken = 0
        white = [name for name, lv in cells if lv == level and _white_box(name) and _norm(name, norm) == norm]
        if ("square", level) in cells and white:
            broken = int((np.logical_and.reduce([robust(w, level) for w in white]) & ~robust("square", level)).sum())
        for version, components in VERSIONS.items():
            names = [f"{version}/{c.attack}" for c in components]
            if f"{version}/square" in names and all((n, level) in cells for n in names):
                at = names.index(f"{version}/square")
                before = robust(names[at - 1], level) if at else np.ones(size, dtype=bool)
                broken = max(broken, int((before & ~robust(names[at], level)).sum()))
        if broken > BLACK_BOX_SHARE * size:
            flags.append(Flag("black_box_wins", f"at eps={level} the black-box square attack broke {broken} samples "
                              "that the white-box attacks before it left robust: gradients are likely masked or "
                              "obfuscated, so gradient-based numbers overstate robustness; report the worst case and "
                              "consider an adaptive attack or more square queries"))
    for attack, by_eps in [*summary["robust_accuracy"].items(), ("worst case", summary["worst_case"])]:
        values = [value for value in by_eps.values() if value is not None]
        if any(later > earlier for earlier, later in zip(values, values[1:])):
            flags.append(Flag("rises_with_eps", f"robust accuracy of {attack} rises with eps ({values}): a larger "
                              "budget contains every smaller one, so the attack is too weak (more --steps, "
                              "--restarts or queries) or gradients are masked"))
    for attack, by_eps in summary["robust_accuracy"].items():
        large = [lv for lv in by_eps if _norm(attack, norm) == "linf" and epsilon_value(lv) >= LARGE_LINF]
        if large and by_eps[large[-1]] is not None and by_eps[large[-1]] > NEAR_ZERO:
            flags.append(Flag("not_zero_at_large_eps", f"{attack} leaves {by_eps[large[-1]]:g} % robust at eps="
                              f"{large[-1]}, where any classifier can be broken: the attack is failing (masked "
                              "gradients, a non-differentiable model, too few steps); do not trust its numbers"))
    return flags
