"""Attacks by name, timm-style: ``create_attack("badnet_rw", words=["cf"])``."""

from __future__ import annotations

from typing import Any

from .base import Attack

_ATTACKS: dict[str, type[Attack]] = {}


def register_attack(name: str):
    def _register(cls: type[Attack]) -> type[Attack]:
        if name in _ATTACKS:
            raise ValueError(f"attack {name!r} is registered twice")
        _ATTACKS[name] = cls
        return cls

    return _register


def list_attacks() -> list[str]:
    return sorted(_ATTACKS)


def create_attack(name: str, **kwargs: Any) -> Attack:
    if name not in _ATTACKS:
        raise ValueError(f"unknown attack {name!r}; available: {list_attacks()}")
    try:
        return _ATTACKS[name](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for attack {name!r}: {err}") from err
