"""Recipe arguments: one YAML per experiment, one section per stage, command-line flags on top.

A recipe YAML holds keys shared by every stage at the top level (``task``, ``target``, ``seed``, ...) and one
mapping per stage (``poison:``, ``train:``, ``defend:``). A stage reads the shared keys its dataclasses know,
then its own section (which must not contain unknown keys: typos fail loudly), then ``--key value`` flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import torch
import yaml
from transformers import HfArgumentParser

STAGES = ("poison", "train", "defend", "scan", "expose")


def parse_recipe_args(dataclass_types: tuple, stage: str, argv: list[str] | None = None) -> tuple:
    """Parse ``--config recipe.yaml`` plus flags into instances of ``dataclass_types``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
    _use_cpu_processes_without_gpus()
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(dataclass_types)
    for action in parser._actions:  # dict fields take JSON on the command line
        if action.type is dict:
            action.type = json.loads
    if known.config:
        defaults = _config_defaults(
            known.config, stage, {f.name for t in dataclass_types for f in dataclasses.fields(t)}
        )
        parser.set_defaults(**defaults)
        for action in parser._actions:
            if action.dest in defaults:
                action.required = False
    return parser.parse_args_into_dataclasses(rest)


def peek_recipe_value(key: str, stage: str, argv: list[str] | None = None, default=None):
    """The value ``key`` takes in ``stage`` (a ``--key`` flag, else the stage section, else a shared key), read
    before parsing, for scripts whose dataclasses depend on it (``trainer: ripple`` needs `RippleConfig`)."""
    argv = sys.argv[1:] if argv is None else argv
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    pre.add_argument(f"--{key}", dest="value")
    known, _ = pre.parse_known_args(argv)
    if known.value is not None:
        return known.value
    if known.config:
        with open(known.config) as f:
            config = yaml.safe_load(f) or {}
        section = config.get(stage) or {}
        if key in section:
            return section[key]
        if key in config:
            return config[key]
    return default


def _use_cpu_processes_without_gpus() -> None:
    # `accelerate launch --multi_gpu` on a machine without GPUs starts one process per rank but leaves
    # transformers/accelerate in single-process mode; asking for CPU processes makes them join one gloo group.
    if "LOCAL_RANK" in os.environ and not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def _config_defaults(path: str, stage: str, fields: set[str]) -> dict:
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a recipe YAML must be a mapping")
    shared = {k: v for k, v in config.items() if k not in STAGES and k in fields}
    section = config.get(stage) or {}
    unknown = sorted(set(section) - fields)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) in section '{stage}': {unknown}")
    return {**shared, **section}
