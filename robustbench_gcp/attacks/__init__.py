"""Adversarial attacks by name: foolbox's reference implementations and a native batched PGD."""

from .native import pgd
from .registry import ATTACKS, BACKENDS, AttackError, AttackSettings, attack_spec, parse_epsilons, run_attack

__all__ = ["ATTACKS", "BACKENDS", "AttackError", "AttackSettings", "attack_spec", "parse_epsilons", "pgd",
           "run_attack"]
