"""AutoAttack (Croce & Hein, 2020): its attacks by name and its versions as cascades of them.

A version is a list of stages; each stage attacks only the rows (image, ε) that are still robust
after the stages before it, always from the clean image, so the last stage's flags are the
per-sample worst case. The settings are the reference's (``pyautoattack`` 0.2.0): 100 iterations,
9 target classes, Square with 5000 queries and p_init 0.8; ``plus`` restarts APGD and FAB 5 times;
``rand`` averages 20 gradients (EoT) for randomised models.

Two backends run a stage: ``native`` (batched rows, per-row random streams, fooled rows stop
early; on an accelerator a stage's targets and restarts run as rows of one batch) and
``reference`` (the ``pyautoattack`` package on the same rows, one ε at a time). Both run through
``attack_robust_rows``, the stage of eval-attack and of ``cascade`` alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

import torch
from torch import Tensor, nn

from ..choices import NORMS, QUERIES
from ..errors import Error
from ..rng import ImageStreams
from .apgd import apgd
from .fab import fab
from .rows import Logits, top_hits
from .square import square

COMPONENTS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
WHITE_BOX = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t")
TARGETS = 9
ITERATIONS = 100


class AutoAttackError(Error, ValueError):
    """Bad AutoAttack settings, with the fix in the message."""


@dataclass(frozen=True)
class Component:
    """One AutoAttack attack with its settings in a version."""

    attack: str
    restarts: int = 1
    targets: int = 0  # target classes of the targeted attacks
    eot: int = 1  # gradients averaged per step (the rand version's 20)


def _standard(attack: str, restarts: int = 1) -> Component:
    return Component(attack, restarts=restarts, targets=TARGETS if attack.endswith("-t") else 0)


VERSIONS: dict[str, tuple[Component, ...]] = {
    "autoattack": tuple(_standard(a) for a in ("apgd-ce", "apgd-t", "fab-t", "square")),
    "autoattack-plus": (_standard("apgd-ce", 5), _standard("apgd-dlr", 5), _standard("fab", 5), _standard("square"),
                        _standard("apgd-t"), _standard("fab-t")),
    "autoattack-rand": (Component("apgd-ce", eot=20), Component("apgd-dlr", eot=20)),
}


def is_autoattack(name: str) -> bool:
    return name in COMPONENTS or name in VERSIONS


def stages(name: str, restarts: int = 1) -> list[tuple[str, Component]]:
    """The (cell name, component) stages of a version ("autoattack/apgd-ce", …) or of one attack
    run alone (its own name; ``restarts`` applies to the untargeted attacks)."""
    if name in VERSIONS:
        return [(f"{name}/{c.attack}", c) for c in VERSIONS[name]]
    component = _standard(name)
    if component.attack in ("apgd-ce", "apgd-dlr", "fab"):
        component = replace(component, restarts=restarts)
    return [(name, component)]


@dataclass(frozen=True)
class AutoAttackSettings:
    norm: str = "linf"
    steps: int | None = None  # APGD and FAB iterations; None: 100
    queries: int = QUERIES  # Square's queries

    def check(self) -> None:
        if self.norm not in NORMS:
            raise AutoAttackError(f"--norm {self.norm!r}: AutoAttack runs with {' or '.join(NORMS)}")
        if self.steps is not None and self.steps < 1:
            raise AutoAttackError(f"--steps {self.steps}: AutoAttack's APGD and FAB need at least 1 iteration")
        if self.queries < 1:
            raise AutoAttackError(f"--queries {self.queries}: Square needs at least 1 query")

    @property
    def iterations(self) -> int:
        return ITERATIONS if self.steps is None else self.steps


def check_classes(component: Component, classes: int) -> None:
    """The DLR losses need 3 classes (targeted: 4), the targeted attacks their targets plus the label."""
    needed = max(component.targets + 1, 4 if component.targets else 3 if component.attack == "apgd-dlr" else 2)
    if classes < needed:
        raise AutoAttackError(f"{component.attack} needs a model with at least {needed} classes, this one has "
                              f"{classes}; run apgd-ce, fab and square by name instead")


def run_component(component: Component, logits: Logits, images: Tensor, labels: Tensor, radii: Tensor,
                  streams: ImageStreams, settings: AutoAttackSettings, max_rows: int | None = None) -> Tensor:
    """Adversarial rows (R, C, H, W) of one natively run component; ``radii`` and ``streams`` per row.
    APGD's and FAB's attempts (targets, restarts) share a run up to ``max_rows`` rows (default R)."""
    c, norm, steps = component, settings.norm, settings.iterations
    if c.attack.startswith("apgd"):
        return apgd(logits, images, labels, radii, streams, norm=norm, loss="ce" if c.attack == "apgd-ce" else "dlr",
                    targets=c.targets, restarts=c.restarts, steps=steps, eot=c.eot, max_rows=max_rows)
    if c.attack.startswith("fab"):
        return fab(logits, images, labels, radii, streams, norm=norm, targets=c.targets, restarts=c.restarts,
                   steps=steps, max_rows=max_rows)
    return square(logits, images, labels, radii, streams, norm=norm, queries=settings.queries)


class RowAttack(Protocol):
    """(images, labels, radii, streams) of rows → their adversarial rows, with at most ``max_rows``
    rows in one run (where the attack batches its attempts)."""

    def __call__(self, images: Tensor, labels: Tensor, radii: Tensor, streams: ImageStreams,
                 max_rows: int | None = None) -> Tensor: ...


def native_attack(component: Component, logits: Logits, settings: AutoAttackSettings) -> RowAttack:
    """The component run natively on rows."""
    return partial(run_component, component, logits, settings=settings)


def check_reference_installed() -> None:
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        raise AutoAttackError("--backend reference needs the reference package: pip install "
                              "'robustbench-gcp[reference]' (pyautoattack 0.2.0)") from None


def run_reference(component: Component, model: nn.Module, images: Tensor, labels: Tensor, radii: Tensor,
                  seed_of: Callable[[float], int], settings: AutoAttackSettings) -> Tensor:
    """Adversarial rows of one component run by ``pyautoattack`` with the same settings, one call
    per distinct radius (the reference takes one ε), seeded with ``seed_of(radius)``."""
    check_reference_installed()
    from pyautoattack import AutoAttack

    adversarial = images.clone()
    for radius in torch.unique(radii).tolist():
        rows = (radii == radius).nonzero().squeeze(1)
        if radius == 0:
            continue
        attack = AutoAttack(model, norm={"linf": "Linf", "l2": "L2"}[settings.norm], eps=radius, seed=seed_of(radius),
                            version="rand" if component.eot > 1 else "standard", device=images.device)
        configure_reference(attack, component, settings)
        attack.logger.disabled = True
        adversarial[rows], _ = attack.run_standard_evaluation(images[rows], labels[rows], batch_size=len(rows))
    return adversarial


def reference_attack(component: Component, model: nn.Module, seed_of: Callable[[float], int],
                     settings: AutoAttackSettings) -> RowAttack:
    """The component run by ``pyautoattack`` on rows; it seeds itself (``seed_of``), not from the streams."""

    def attack(images: Tensor, labels: Tensor, radii: Tensor, streams: ImageStreams,
               max_rows: int | None = None) -> Tensor:
        return run_reference(component, model, images, labels, radii, seed_of, settings)

    return attack


def configure_reference(attack, component: Component, settings: AutoAttackSettings) -> None:
    """Set the reference's attack objects to the component's settings."""
    attack.attacks_to_run = [component.attack]
    for apgd_attack in (attack.apgd, attack.apgd_targeted):
        steps = settings.iterations  # the reference derives its checkpoints from n_iter in __init__
        apgd_attack.n_iter, apgd_attack.n_iter_orig = steps, steps
        apgd_attack.n_iter_2, apgd_attack.n_iter_min = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1)
        apgd_attack.size_decr = max(int(0.03 * steps), 1)
        apgd_attack.eot_iter = component.eot
    attack.apgd.n_restarts = component.restarts
    attack.apgd_targeted.n_restarts = 1
    attack.apgd_targeted.n_target_classes = component.targets or TARGETS
    attack.fab.n_iter = settings.iterations
    attack.fab.n_restarts = component.restarts
    attack.fab.n_target_classes = component.targets or TARGETS
    attack.square.n_queries = settings.queries


def attack_robust_rows(attack: RowAttack, logits: Logits, images: Tensor, labels: Tensor, radii: Tensor,
                       robust: Tensor, streams: ImageStreams) -> tuple[Tensor, Tensor]:
    """One stage of a cascade on a batch (N images) at E radii: ``attack`` runs, from the clean
    images, on the (ε, image) rows that ``robust`` (E, N) marks and whose radius is above 0
    (``streams``: one per row, ε-major). Returns the flags (E, N) of the rows still robust after
    it, and of the rows it pushed out of the top 5 (robust rows were in it: top-1 correct so far).

    On an accelerator, the attempts of a stage (targets, restarts) share runs of up to E × N rows,
    the most the first stage can hold: fewer, larger runs keep the device busy. On the CPU they
    run one after the other, the fewest operations. The results are the same."""
    eps_of, image_of = (robust & (radii[:, None] > 0)).nonzero(as_tuple=True)
    robust, top5_missed = robust.clone(), torch.zeros_like(robust)
    if len(eps_of):
        adversarial = attack(images[image_of], labels[image_of], radii[eps_of],
                             streams[eps_of * len(images) + image_of],
                             max_rows=None if images.device.type == "cpu" else robust.numel())
        with torch.no_grad():
            top1, top5 = top_hits(logits(adversarial), labels[image_of])
        robust[eps_of, image_of] = top1
        top5_missed[eps_of, image_of] = ~top5
    return robust, top5_missed


def cascade(version: str, logits: Logits, images: Tensor, labels: Tensor, radius: float,
            streams_of: Callable[[str], ImageStreams], settings: AutoAttackSettings) -> dict[str, Tensor]:
    """A version on one batch at one ε, in memory, natively: the robust flags (N,) after each
    stage, keyed by cell name. ``streams_of(cell)`` gives the batch's streams for a stage."""
    with torch.no_grad():
        robust = top_hits(logits(images), labels)[0][None]
    radii = torch.tensor([radius], device=images.device)
    flags = {}
    for cell, component in stages(version):
        robust, _ = attack_robust_rows(native_attack(component, logits, settings), logits, images, labels, radii,
                                       robust, streams_of(cell))
        flags[cell] = robust[0]
    return flags
