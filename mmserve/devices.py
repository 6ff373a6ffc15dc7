"""Device and dtype selection from config: CUDA when present, CPU otherwise."""

from __future__ import annotations

import logging
from typing import Literal

from mmserve.lazy import lazy

torch = lazy("torch")  # imported on first use: declaring a family's args costs no torch

log = logging.getLogger(__name__)

DtypeName = Literal["auto", "float32", "float16", "bfloat16"]

# What a process's CUDA context holds on its GPU, outside torch's per-process cap (order of magnitude
# on current drivers; the capacity planner and the lmdeploy KV sizing keep it inside each share).
CUDA_CONTEXT_GB = 0.5

def resolve_device(device: str = "auto") -> str:
    """'auto' picks cuda when a GPU is visible; asking for cuda without one is a config error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        from mmserve.errors import ConfigError

        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but no CUDA GPU is visible", field="device")
        index = torch.device(device).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r} is not visible here ({torch.cuda.device_count()} GPU(s)); in a Ray replica "
                "CUDA_VISIBLE_DEVICES holds only the GPUs Ray assigned it: use 'cuda' or 'auto'",
                field="device",
            )
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto' is float16 on GPU, float32 on CPU; half precision on CPU falls back to float32.

    Half precision kernels are missing or slow on CPU, so a production config (float16) still runs
    unchanged on a CPU test machine.
    """
    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    chosen = getattr(torch, dtype)  # a DtypeName: float32, float16 or bfloat16
    if not device.startswith("cuda") and chosen != torch.float32:
        log.info("dtype %s requested on %s: using float32", dtype, device)
        return torch.float32
    return chosen


_gpu_share: float | None = None  # the GPU share this process was given (by its model replica), if any


def gpu_share() -> float | None:
    """The GPU share (Ray's num_gpus) this process was given at start, for runners that size memory
    themselves (lmdeploy's KV cache); None outside a replica (benchmarks, the GPU check): a whole GPU."""
    return _gpu_share


def cap_gpu_memory(fraction: float | None, device: str) -> float | None:
    """Limit this process's torch allocations to its Ray GPU fraction, and remember the share.

    Ray's num_gpus only schedules; replicas packed on one GPU cap themselves. The cap covers torch's
    caching allocator only: not the CUDA context (~0.5 GB per process), cuBLAS workspaces or memory a
    library allocates itself (TurboMind's weights and KV cache), so the capacity planner
    (`mmserve.plan`) keeps headroom for those. Returns the fraction applied, or None.
    """
    global _gpu_share
    _gpu_share = fraction or None
    if not fraction or not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    applied = memory_fraction_for(fraction)
    # torch needs an index here: a bare torch.device("cuda") raises "Expected a torch.device with a
    # specified index". Ray's CUDA_VISIBLE_DEVICES makes the replica's GPU the current device.
    torch.cuda.set_per_process_memory_fraction(applied, device_index(device))
    return applied


def device_index(device: str) -> int:
    """The CUDA device index of 'cuda' or 'cuda:N' ('cuda' means the current device)."""
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


def check_device(device: str) -> None:
    """Health check: a CUDA context broken by a device fault fails every later runtime call."""
    if device.startswith("cuda"):
        torch.cuda.mem_get_info(device_index(device))


def memory_fraction_for(num_gpus: float) -> float:
    """The per-process memory fraction for a replica holding num_gpus of one device.

    Whole GPUs (>= 1) get the full device; fractions are used as-is, clamped to (0, 1].
    """
    if num_gpus <= 0:
        raise ValueError("num_gpus must be positive to cap GPU memory")
    return min(float(num_gpus), 1.0)
