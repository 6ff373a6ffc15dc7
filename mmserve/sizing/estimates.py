"""GPU memory one replica needs: weights from the real parameter count, plus activations / KV cache.

Units are decimal GB (1e9 bytes), like the published figures and lmdeploy_engine. Every
activation estimate carries the assumption it rests on; the report prints it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mmserve import model_configs
from mmserve.config import resolve_model_path
from mmserve.devices import CUDA_CONTEXT_GB
from mmserve.sizing.params import ComponentSize, NotSizable, component_sizes

GB = 1e9
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# bitsandbytes: int8 weights + one fp32 scale per row (negligible); NF4 packs 2 weights per byte and
# keeps one fp32 absmax per 64-weight block (4/64 B). Only nn.Linear weights are quantized; embeddings,
# norms, biases, the output head and the library's fp32 modules stay in the compute dtype.
QUANT_BYTES = {"8bit": 1.0, "4bit": 0.5 + 4 / 64}


@dataclass
class ModelEstimate:
    task: str
    name: str
    model: str
    weights_gb: float | None  # None: the planner cannot size this model
    activation_gb: float
    assumption: str
    notes: list[str] = field(default_factory=list)
    kv_fills_share: bool = False  # lmdeploy: the KV cache takes whatever the share leaves

    @property
    def need_gb(self) -> float | None:
        if self.weights_gb is None:
            return None
        return self.weights_gb + self.activation_gb + CUDA_CONTEXT_GB


def model_folder(model: str, shipped: dict[str, str] | None = None) -> Path | None:
    """A local folder's own configs first; else the shipped config of a hub id its family ships
    (`shipped`: hub id -> folder key under mmserve/model_configs)."""
    local = Path(resolve_model_path(model))
    if local.is_dir():
        return local
    key = model_configs.key_for(model, shipped or {})
    return model_configs.path(key) if key else None


def sizes(model: str, shipped: dict[str, str] | None = None) -> tuple[ComponentSize, ...] | None:
    folder = model_folder(model, shipped)
    if folder is None:
        return None
    try:
        return component_sizes(str(folder), model_configs.VOCAB_SIZES.get(folder.name))
    except NotSizable:
        return None


def weight_bytes(parts, dtype: str, quantization: str = "none", quantized: set[str] | None = None) -> float:
    """Bytes on the GPU; `quantized` names the components bitsandbytes quantizes (None: all)."""
    dtype_bytes = DTYPE_BYTES[dtype]
    fp32_bytes = 4 if dtype == "float16" else dtype_bytes  # transformers keeps these in fp32 for fp16 only
    total = 0.0
    for part in parts:
        rest = part.params - part.fp32_params
        if quantization in QUANT_BYTES and (quantized is None or part.name in quantized):
            total += part.linear_params * QUANT_BYTES[quantization] + (rest - part.linear_params) * dtype_bytes
        else:
            total += rest * dtype_bytes
        total += part.fp32_params * fp32_bytes
    return total


def gpu_dtype(dtype: str, default: str = "float16") -> str:
    return default if dtype == "auto" else dtype


def read_json(folder: Path | None, *names: str) -> dict:
    for name in names:
        if folder is not None and (folder / name).exists():
            return json.loads((folder / name).read_text())
    return {}


def decoder_peak_bytes(channels_in: int, channels_out: int, positions: int, dtype_bytes: int) -> float:
    """A VAE decoder's peak: its last stage at full resolution, where the upsampled input
    (channels_in) and the output (channels_out) are each alive ~3 times at once (input,
    normalised/activated copy, conv output)."""
    return 3 * (channels_in + channels_out) * positions * dtype_bytes


def unknown(args, why: str) -> ModelEstimate:
    """The estimate of a model entry the planner cannot size (a warning, not an error)."""
    return ModelEstimate(args.task, args.name, args.runner.model, None, 0.0, why)



def funasr_config(folder) -> dict:
    """A FunASR model folder's config.yaml ({} without one)."""
    import yaml

    if folder is None or not (folder / "config.yaml").exists():
        return {}
    return yaml.safe_load((folder / "config.yaml").read_text())
