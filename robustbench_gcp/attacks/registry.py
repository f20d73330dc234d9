"""Attacks by name, behind one interface: (model, images in [0, 1], labels, epsilons) →
adversarial images (E, N, C, H, W), one set per epsilon, inside the ε-ball and [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..choices import ATTACK_BACKENDS
from ..errors import Error, did_you_mean
from ..rng import Draws, ImageStreams, Randomness
from .autoattack import COMPONENTS, VERSIONS, is_autoattack, stages
from .native import pgd, random_starts

BACKENDS = ATTACK_BACKENDS
MADRY_TRAVEL = 2.5  # steps × step size in units of ε: PGD can travel 2.5 ε (Madry et al., 2018)
NORM_LABELS = {"linf": "L∞", "l2": "L2"}


class AttackError(Error, ValueError):
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


class Epsilon(NamedTuple):
    """One perturbation budget: as the user wrote it (the cell's name) and its value."""

    text: str
    value: float


@dataclass(frozen=True)
class AttackSettings:
    steps: int | None = None  # None: the attack's foolbox default; 0 is no step (the random start alone)
    restarts: int = 1
    rel_stepsize: float | None = None  # None: foolbox's default
    backend: str = "native"  # native where an attack has a native version, foolbox otherwise; reference: as native,
    # with AutoAttack's attacks run by the pyautoattack package
    autocast: bool = False  # bf16 model passes (native only)

    def check(self) -> None:
        if self.steps is not None and self.steps < 0:
            raise AttackError(f"--steps {self.steps}: pass 0 or more iterations")
        if self.restarts < 1:
            raise AttackError(f"--restarts {self.restarts}: pass at least 1")
        if self.rel_stepsize is not None and not (math.isfinite(self.rel_stepsize) and self.rel_stepsize >= 0):
            raise AttackError(f"--rel-stepsize {self.rel_stepsize}: pass a finite step size ≥ 0 (relative to eps)")
        if self.backend not in BACKENDS:
            raise AttackError(f"--backend {self.backend!r}: choose one of {', '.join(BACKENDS)}")

    def steps_of(self, spec: AttackSpec) -> int | None:
        return spec.default_steps if self.steps is None else self.steps

    def rel_stepsize_of(self, spec: AttackSpec) -> float | None:
        """The step size relative to ε: as given; else, when ``steps`` is given, Madry et al.'s
        2.5 / steps, so the attack can cross the ε-ball whatever the number of steps; else foolbox's
        default (tuned for its default steps)."""
        if self.rel_stepsize is not None:
            return self.rel_stepsize
        if spec.default_rel_stepsize is not None and self.steps:
            return MADRY_TRAVEL / self.steps
        return spec.default_rel_stepsize

    def short_reach(self, spec: AttackSpec) -> float | None:
        """steps × step size (in ε) when it is below 1, the attack then cannot cross the ε-ball."""
        steps, rel = self.steps_of(spec), self.rel_stepsize_of(spec)
        if steps is None or rel is None:
            return None
        reach = steps * rel
        return reach if reach < 1 else None


ATTACK_NAMES = (*ATTACKS, *VERSIONS, *COMPONENTS)
ATTACK_CELLS = (*ATTACKS, *COMPONENTS, *(cell for version in VERSIONS for cell, _ in stages(version)))  # in tables


def check_attack(name: str) -> None:
    """A name ``--attacks`` takes: a PGD/foolbox attack, an AutoAttack version or one of its attacks."""
    if name not in ATTACK_NAMES:
        raise AttackError(f"unknown attack {name!r}{did_you_mean(name, ATTACK_NAMES)}; valid attacks: "
                          f"{', '.join(ATTACK_NAMES)}")


def attack_spec(name: str) -> AttackSpec:
    check_attack(name)
    if is_autoattack(name):
        raise AttackError(f"{name} is an AutoAttack attack: it runs in eval-attack's cascade, not through run_attack")
    return ATTACKS[name]


def epsilon_value(text: str) -> float:
    """The value of one ε as written: '1/255' → 0.0039…"""
    try:
        return float(Fraction(text))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise AttackError(f"epsilon {text!r} is not a finite number or fraction (e.g. 0.01 or 4/255)") from None


def attacks_by_norm(names: Sequence[str], autoattack_norm: str) -> dict[str, list[str]]:
    """Attack (or cell) names grouped by the norm they bound: their own, or for AutoAttack's
    attacks and stages (not in ATTACKS) the run's ``--norm``. A worst case exists within one."""
    grouped: dict[str, list[str]] = {}
    for name in names:
        grouped.setdefault(ATTACKS[name].norm if name in ATTACKS else autoattack_norm, []).append(name)
    return grouped


def mixed_norms(grouped: dict[str, list[str]]) -> str:
    """'L∞: linf-pgd; L2: autoattack', the words of a refusal to mix threat models."""
    return "; ".join(f"{NORM_LABELS[norm]}: {', '.join(names)}" for norm, names in grouped.items())


def parse_epsilons(text: str, norm: str = "linf") -> list[Epsilon]:
    """'0,1/255,0.5' → [('0', 0.0), ('1/255', 0.0039…), ('0.5', 0.5)]; each a budget ``norm``
    allows (``check_epsilons``: up to 1 for L∞; L2 has no bound before the image size is known)."""
    parsed = [Epsilon(part, epsilon_value(part)) for part in (p.strip() for p in text.split(",") if p.strip())]
    check_epsilons(parsed, norm)
    return parsed


def epsilon_bound(norm: str, input_size: int | None = None) -> float:
    """The largest budget that still constrains an attack: the diameter of the [0, 1] box of
    3 × H × W images, 1 in L∞ and √(3·H·W) in L2 (unbounded while the image size is unknown)."""
    if norm == "linf":
        return 1.0
    return math.sqrt(3 * input_size * input_size) if input_size else math.inf


def check_epsilons(epsilons: list[Epsilon], norm: str = "linf", input_size: int | None = None) -> None:
    """Budgets the attacks can take: at least one, each from 0 to ``epsilon_bound`` (a larger
    ball holds the whole image box, so the number was likely meant otherwise), no name twice."""
    if not epsilons:
        raise AttackError("--eps needs at least one epsilon, e.g. 0,1/255,2/255,4/255")
    bound = epsilon_bound(norm, input_size)
    for text, value in epsilons:
        if not (math.isfinite(value) and 0 <= value <= bound):
            box = f"{input_size}×{input_size}-px images" if input_size and norm == "l2" else "images"
            meant = f" (did you mean {text}/255?)" if norm == "linf" and 1 < value <= 255 else ""
            raise AttackError(f"--eps {text} = {value:g} is outside [0, {bound:.4g}]{meant}: {NORM_LABELS[norm]} "
                              f"budgets run up to the diameter of the [0, 1] box of {box}, whose ball holds every "
                              "image; pass budgets in that range (fractions allowed, e.g. 8/255)")
    if len({text for text, _ in epsilons}) != len(epsilons):
        raise AttackError(f"--eps names an epsilon twice: {', '.join(text for text, _ in epsilons)}")


def _foolbox_attack(spec: AttackSpec, settings: AttackSettings, generator: Randomness, count: int):
    """foolbox's attack for ``spec``, repeated for restarts; with a ``generator`` its random starts
    come from it (``count`` ε), else from torch's global generator, as foolbox draws them."""
    import foolbox as fb

    cls = getattr(fb.attacks, spec.foolbox_class)
    if generator is not None and hasattr(cls, "get_random_start"):  # the gradient attacks (PGD) start randomly
        cls = _drawing_starts(cls, spec.norm, generator, count)
    kwargs = {}
    if spec.default_rel_stepsize is not None:
        kwargs["rel_stepsize"] = settings.rel_stepsize_of(spec)
    if spec.default_steps is not None:
        kwargs["steps"] = settings.steps_of(spec)
    if spec.foolbox_class == "L2CarliniWagnerAttack":
        kwargs["binary_search_steps"] = 5
    attack = cls(**kwargs)
    return attack.repeat(settings.restarts) if settings.restarts > 1 else attack


def _drawing_starts(cls: type, norm: str, generator: ImageStreams | torch.Generator, count: int) -> type:
    """foolbox gradient attack ``cls`` with native PGD's random starts: each (ε, image) start from
    its own stream (``generator``: ε-major image streams), so it depends on nothing else in the
    batch, or from one generator. foolbox asks for the starts ε by ε, restart by restart."""
    import eagerpy as ep

    class DrawnStarts(cls):
        drawn = 0  # starts drawn so far: the ε and the restart of the next one

        def get_random_start(self, x0: ep.Tensor, epsilon: float) -> ep.Tensor:
            restart, k = divmod(self.drawn, count)
            self.drawn += 1
            images = x0.raw
            randomness = _restart(generator, restart)
            if isinstance(randomness, ImageStreams):
                randomness = randomness[k * len(images):(k + 1) * len(images)]
            unit = random_starts(norm, images, 1, Draws(len(images), images.device, randomness))
            return x0 + ep.astensor(unit) * epsilon

    return DrawnStarts


def _restart(generator: Randomness, restart: int) -> Randomness:
    """The randomness of a restart: image streams take their next repetition, a generator moves on."""
    return generator.repetition(restart) if isinstance(generator, ImageStreams) else generator


def run_attack(
    name: str,
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epsilons: list[float],
    settings: AttackSettings,
    generator: Randomness = None,
) -> Tensor:
    """Adversarial images (E, N, C, H, W) of attack ``name`` at every epsilon.

    ``generator``: one for the batch, or ``ImageStreams`` with one stream per (ε, image) pair,
    ε-major: PGD's random starts, native or foolbox's (None: foolbox draws from torch's global
    generator).
    """
    spec = attack_spec(name)
    if settings.backend != "foolbox" and spec.native:
        return _native_with_restarts(spec, model, images, labels, epsilons, settings, generator)
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=images.device)
    attack = _foolbox_attack(spec, settings, generator, len(epsilons))
    _, clipped, _ = attack(fmodel, images, labels, epsilons=epsilons)
    return torch.stack([c.detach() for c in clipped])


def _native_with_restarts(spec, model, images, labels, epsilons, settings, generator) -> Tensor:
    """Restarts keep, per image and ε, the first adversarial example found (foolbox's Repeated).
    Each restart draws new starts: a generator moves on, image streams take their next repetition."""
    best, found = None, None
    for restart in range(settings.restarts):
        adversarial = pgd(
            model, images, labels, epsilons, norm=spec.norm, steps=settings.steps_of(spec),
            rel_stepsize=settings.rel_stepsize_of(spec), generator=_restart(generator, restart),
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
