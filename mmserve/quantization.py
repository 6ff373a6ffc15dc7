"""bitsandbytes weight quantization, one way for every runner (transformers models and diffusers pipelines)."""

from __future__ import annotations

import importlib.util
from typing import Literal

from mmserve.errors import ConfigError
from mmserve.lazy import lazy

torch = lazy("torch")  # imported on first use: declaring the family costs no torch

Quantization = Literal["none", "8bit", "4bit"]


def bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def bnb_kwargs(mode: Quantization, device: str, dtype: torch.dtype) -> dict | None:
    """Keyword arguments for transformers' or diffusers' ``BitsAndBytesConfig`` (None: no quantization).

    Refused before any weights are read when it cannot work: no CUDA device, or no bitsandbytes.
    4-bit is NF4 with compute in the model's dtype.
    """
    if mode == "none":
        return None
    if not device.startswith("cuda"):
        raise ConfigError(f"{mode} quantization needs a CUDA GPU (device is {device})", field="quantization")
    if not bitsandbytes_installed():
        raise ConfigError("quantization needs bitsandbytes>=0.48: pip install 'mmserve[gpu]'", field="quantization")
    if mode == "8bit":
        return {"load_in_8bit": True}
    return {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype}


def transformers_bnb_config(mode: Quantization, device: str, dtype: torch.dtype):
    """transformers' ``BitsAndBytesConfig`` for a model loaded with ``device_map`` (never moved with .to())."""
    kwargs = bnb_kwargs(mode, device, dtype)
    if kwargs is None:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**kwargs)
