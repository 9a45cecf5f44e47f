"""Data-poisoning attacks: one module per attack, registered by name, applied with `Dataset.map`."""

from . import badnets, blend, one_pixel, rare_words, sig, trojan, wanet  # noqa: F401  (register their attacks)
from .base import Attack, poison, poison_task, triggered_test_set
from .registry import create_attack, list_attacks, register_attack

__all__ = ["Attack", "create_attack", "list_attacks", "poison", "poison_task", "register_attack", "triggered_test_set"]
