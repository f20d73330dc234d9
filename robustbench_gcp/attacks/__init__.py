"""Adversarial attacks by name: foolbox's reference implementations and a native batched PGD."""

from .native import pgd
from .registry import (
    ATTACKS,
    BACKENDS,
    AttackError,
    AttackSettings,
    Epsilon,
    attack_spec,
    check_epsilons,
    parse_epsilons,
    run_attack,
)

__all__ = ["ATTACKS", "BACKENDS", "AttackError", "AttackSettings", "Epsilon", "attack_spec", "check_epsilons",
           "parse_epsilons", "pgd", "run_attack"]
