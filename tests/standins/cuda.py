"""A CUDA GPU for CI: the torch.cuda entry points mmserve calls, checked as torch checks them.

Each stand-in has the real function's signature (`check_signatures`), records the exact arguments
it was given, and runs torch's own argument handling (`torch.cuda._utils._get_device_index`), so
a call that would raise on a real GPU raises here too: a bare ``torch.device("cuda")`` passed to
``set_per_process_memory_fraction`` fails exactly as it does on a GPU.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from torch.cuda._utils import _get_device_index

GB = 10**9


@dataclass
class DeviceProperties:
    """What mmserve reads from ``torch.cuda.get_device_properties``."""

    name: str
    total_memory: int
    major: int = 9
    minor: int = 0
    multi_processor_count: int = 132


@dataclass
class FakeGpu:
    """``count`` GPUs of ``total_gb`` each, ``used_gb`` of which other processes already hold."""

    total_gb: float = 80.0
    used_gb: float = 0.0
    count: int = 1
    name: str = "NVIDIA H100 80GB HBM3"
    calls: list[tuple[str, tuple]] = field(default_factory=list)
    memory_fraction: dict[int, float] = field(default_factory=dict)

    def install(self, monkeypatch) -> "FakeGpu":
        check_signatures(self)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        for name in STANDINS:
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        return self

    def called(self, name: str) -> list[tuple]:
        return [args for n, args in self.calls if n == name]

    # --- stand-ins: same parameters as torch's, same argument checks -------------------------------

    def set_per_process_memory_fraction(self, fraction, device=None) -> None:
        self.calls.append(("set_per_process_memory_fraction", (fraction, device)))
        if device is None:
            device = torch.cuda.current_device()
        device = self._index(_get_device_index(device))
        if not isinstance(fraction, float):
            raise TypeError("Invalid type for fraction argument, must be `float`")
        if fraction < 0 or fraction > 1:
            raise ValueError(f"Invalid fraction value: {fraction}. Allowed range: 0~1")
        self.memory_fraction[device] = fraction

    def mem_get_info(self, device=None) -> tuple[int, int]:
        self.calls.append(("mem_get_info", (device,)))
        if device is None:
            device = torch.cuda.current_device()
        self._index(_get_device_index(device, optional=True))
        total = int(self.total_gb * GB)
        return total - int(self.used_gb * GB), total

    def get_device_properties(self, device=None) -> DeviceProperties:
        self.calls.append(("get_device_properties", (device,)))
        self._index(_get_device_index(device, optional=True))
        return DeviceProperties(self.name, int(self.total_gb * GB))

    def get_rng_state(self, device="cuda") -> torch.Tensor:
        self.calls.append(("get_rng_state", (device,)))
        self._rng_index(device)
        return torch.get_rng_state()

    def set_rng_state(self, new_state, device="cuda") -> None:
        self.calls.append(("set_rng_state", (new_state, device)))
        if not isinstance(new_state, torch.Tensor) or new_state.dtype != torch.uint8:
            raise TypeError("new_state must be a torch.ByteTensor")
        self._rng_index(device)

    def _rng_index(self, device) -> int:
        """get/set_rng_state's own conversion: a str or int becomes a cuda torch.device."""
        if isinstance(device, str):
            device = torch.device(device)
        elif isinstance(device, int):
            device = torch.device("cuda", device)
        return self._index(device.index if device.index is not None else torch.cuda.current_device())

    def _index(self, index: int) -> int:
        if not 0 <= index < self.count:
            raise AssertionError("Invalid device id")
        return index


STANDINS = ("set_per_process_memory_fraction", "mem_get_info", "get_device_properties", "get_rng_state",
            "set_rng_state")
REAL = {name: getattr(torch.cuda, name) for name in STANDINS}  # before any test patches them


def parameters(fn) -> list[tuple[str, object, object]]:
    """Names, kinds and defaults: what a caller's arguments bind against (annotations aside)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def check_signatures(gpu: FakeGpu) -> None:
    """Every stand-in takes exactly the parameters of the torch function it replaces."""
    for name in STANDINS:
        assert parameters(getattr(gpu, name)) == parameters(REAL[name]), f"stand-in for torch.cuda.{name} drifted"
