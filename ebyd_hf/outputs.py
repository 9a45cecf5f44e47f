"""Process state under `accelerate launch`, and output folders that appear complete or not at all."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager

import torch
from accelerate import PartialState
from accelerate.utils import parse_flag_from_env


def process_state() -> PartialState:
    """This process's place in an `accelerate launch` run, CPU-only runs (gloo) included."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def from_main_process(value):
    """The main process's ``value`` on every process (a no-op in a single process).

    Data-dependent control flow (how many unlearning blocks, which trigger words) must be the same on every rank,
    or the ranks' collectives stop matching; the ranks' models are not guaranteed to be bit-identical.
    """
    state = process_state()
    if state.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value], from_process=0)[0]


@contextmanager
def atomic_output_dir(path: str, *, overwrite: bool = False):
    """Yield a scratch folder ``<path>.partial`` that becomes ``path`` only if the block succeeds.

    On any error the scratch folder is deleted, so a failed run never leaves a half-written model or report.
    Safe under `accelerate launch`: the main process owns the folder, the others wait for it.
    """
    path = os.path.normpath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"output directory {path!r} exists; pass overwrite_output_dir / --overwrite to replace it"
        )
    partial = f"{path}.partial"
    state = process_state()
    if state.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
    state.wait_for_everyone()
    try:
        yield partial
    except BaseException:
        if state.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    state.wait_for_everyone()
    if state.is_main_process:
        if os.path.exists(path):
            shutil.rmtree(path)
        os.replace(partial, path)
    state.wait_for_everyone()
