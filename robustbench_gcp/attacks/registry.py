"""Attacks by name, behind one interface: (model, images in [0, 1], labels, epsilons) →
adversarial images (E, N, C, H, W), one set per epsilon, inside the ε-ball and [0, 1]."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import Tensor, nn

from ..corruptions.random import GeneratorArg
from .native import pgd

BACKENDS = ("foolbox", "native")


class AttackError(ValueError):
    """Bad attack settings, with the fix in the message."""


@dataclass(frozen=True)
class AttackSpec:
    """One attack: its norm, its foolbox class and defaults, and whether a native version exists."""

    name: str
    norm: str
    foolbox_class: str
    default_steps: int | None
    default_rel_stepsize: float | None
    native: bool = False


ATTACKS: dict[str, AttackSpec] = {
    spec.name: spec
    for spec in (
        AttackSpec("fgsm", "linf", "LinfFastGradientAttack", None, None),
        AttackSpec("linf-pgd", "linf", "LinfPGD", 40, 0.01 / 0.3, native=True),
        AttackSpec("l2-pgd", "l2", "L2PGD", 50, 0.025, native=True),
        AttackSpec("l2-cw", "l2", "L2CarliniWagnerAttack", 100, None),
        AttackSpec("linf-deepfool", "linf", "LinfDeepFoolAttack", 50, None),
        AttackSpec("l2-deepfool", "l2", "L2DeepFoolAttack", 50, None),
    )
}


@dataclass(frozen=True)
class AttackSettings:
    steps: int | None = None  # None: the attack's foolbox default
    restarts: int = 1
    rel_stepsize: float | None = None  # None: foolbox's default
    backend: str = "native"  # native where an attack has a native version, foolbox otherwise
    autocast: bool = False  # bf16 model passes (native only)


def attack_spec(name: str) -> AttackSpec:
    if name not in ATTACKS:
        raise AttackError(f"unknown attack {name!r}; valid attacks: {', '.join(ATTACKS)}")
    return ATTACKS[name]


def parse_epsilons(text: str) -> list[tuple[str, float]]:
    """'0,1/255,0.5' → [('0', 0.0), ('1/255', 0.0039…), ('0.5', 0.5)]; each in [0, 1]."""
    parsed = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        try:
            value = float(Fraction(part))
        except (ValueError, ZeroDivisionError):
            raise AttackError(f"epsilon {part!r} is not a number or fraction (e.g. 0.01 or 4/255)") from None
        if not 0 <= value <= 1:
            raise AttackError(f"epsilon {part} = {value:g} is outside [0, 1]; images are in [0, 1]")
        parsed.append((part, value))
    if not parsed:
        raise AttackError("--eps needs at least one epsilon, e.g. 0,1/255,2/255,4/255")
    return parsed


def _foolbox_attack(spec: AttackSpec, settings: AttackSettings):
    import foolbox as fb

    cls = getattr(fb.attacks, spec.foolbox_class)
    kwargs = {}
    if spec.default_rel_stepsize is not None:
        kwargs["rel_stepsize"] = settings.rel_stepsize or spec.default_rel_stepsize
    if spec.default_steps is not None:
        kwargs["steps"] = settings.steps or spec.default_steps
    if spec.foolbox_class == "L2CarliniWagnerAttack":
        kwargs["binary_search_steps"] = 5
    attack = cls(**kwargs)
    return attack.repeat(settings.restarts) if settings.restarts > 1 else attack


def run_attack(
    name: str,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epsilons: list[float],
    settings: AttackSettings,
    generator: GeneratorArg = None,
) -> Tensor:
    """Adversarial images (E, N, C, H, W) of attack ``name`` at every epsilon."""
    spec = attack_spec(name)
    if settings.backend == "native" and spec.native:
        return _native_with_restarts(spec, model, images, labels, epsilons, settings, generator)
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=images.device)
    _, clipped, _ = _foolbox_attack(spec, settings)(fmodel, images, labels, epsilons=epsilons)
    return torch.stack([c.detach() for c in clipped])


def _native_with_restarts(spec, model, images, labels, epsilons, settings, generator) -> Tensor:
    """Restarts keep, per image and ε, the first adversarial example found (foolbox's Repeated)."""
    best, found = None, None
    for _ in range(settings.restarts):
        adversarial = pgd(
            model, images, labels, epsilons, norm=spec.norm, steps=settings.steps or spec.default_steps,
            rel_stepsize=settings.rel_stepsize or spec.default_rel_stepsize, generator=generator,
            autocast=settings.autocast,
        )
        if settings.restarts == 1:  # nothing to choose between: skip the extra model pass
            return adversarial
        with torch.no_grad(), torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=settings.autocast):
            fooled = model(adversarial.flatten(0, 1)).argmax(1).view(len(epsilons), -1) != labels
        if best is None:
            best, found = adversarial, fooled
        else:
            take = fooled & ~found
            best = torch.where(take[..., None, None, None], adversarial, best)
            found = found | fooled
        if bool(found.all()):
            break
    return best
