"""Data-poisoning attacks: one module per attack, registered by name, applied with `Dataset.map`."""

from . import (  # noqa: F401  (each module registers its attack)
    badnets,
    blend,
    lwp,
    one_pixel,
    rare_words,
    ripple,
    sentence,
    sig,
    sos,
    syntactic,
    trojan,
    wanet,
)
from .base import Attack, poison, poison_task, triggered_test_set
from .registry import create_attack, list_attacks, register_attack

__all__ = ["Attack", "create_attack", "list_attacks", "poison", "poison_task", "register_attack", "triggered_test_set"]
