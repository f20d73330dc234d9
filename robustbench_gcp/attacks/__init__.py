"""Adversarial attacks by name: foolbox's reference implementations, a native batched PGD and
native AutoAttack (APGD, FAB, Square), with the pyautoattack package as its reference."""

from .native import pgd
from .registry import (
    ATTACK_CELLS,
    ATTACK_NAMES,
    ATTACKS,
    BACKENDS,
    AttackError,
    AttackSettings,
    Epsilon,
    attack_spec,
    attacks_by_norm,
    check_attack,
    check_epsilons,
    epsilon_value,
    mixed_norms,
    parse_epsilons,
    run_attack,
)

__all__ = ["ATTACKS", "ATTACK_CELLS", "ATTACK_NAMES", "BACKENDS", "AttackError", "AttackSettings", "Epsilon",
           "attack_spec", "attacks_by_norm", "check_attack", "check_epsilons", "epsilon_value", "mixed_norms",
           "parse_epsilons", "pgd", "run_attack"]
