"""Loading onto a GPU, for CI: ``from_pretrained`` with a CUDA device map or bitsandbytes, and
diffusers' pipeline placement (``.to``, ``enable_model_cpu_offload``).

On a GPU these put weights on the device, quantized by bitsandbytes when asked. Here each stand-in
binds the call against the real method's signature, checks the arguments as the real loader does
(the quantization configs are the libraries' own classes, which validate themselves when built),
records them, and then loads the same folder unquantized on the CPU, so the runner's own code after
loading still runs for real.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch


def _cuda_index(value) -> int:
    device = torch.device("cuda", value) if isinstance(value, int) else torch.device(value)
    if device.type != "cuda":
        raise ValueError(f"bitsandbytes weights must be placed on a GPU, got device {value!r}")
    index = device.index if device.index is not None else torch.cuda.current_device()
    if not 0 <= index < torch.cuda.device_count():
        raise ValueError(f"device {value!r} is not visible")
    return index


@dataclass
class GpuLoading:
    """Stands in for GPU loading; ``calls`` holds (what, args, kwargs) for each load or placement."""

    calls: list[tuple[str, tuple, dict]] = field(default_factory=list)

    def called(self, what: str) -> list[dict]:
        return [kwargs for name, _, kwargs in self.calls if name == what]

    # --- transformers models -------------------------------------------------------------------

    def install_transformers(self, monkeypatch, *auto_classes) -> "GpuLoading":
        for cls in auto_classes:
            monkeypatch.setattr(cls, "from_pretrained", self._model_loader(cls, cls.from_pretrained))
        return self

    def _model_loader(self, cls, real):
        signature = inspect.signature(real)

        def from_pretrained(*args, **kwargs):
            signature.bind(*args, **kwargs)
            self.calls.append((f"{cls.__name__}.from_pretrained", args, dict(kwargs)))
            quantization = kwargs.pop("quantization_config", None)
            device_map = kwargs.pop("device_map", None)
            if quantization is not None:
                from transformers import BitsAndBytesConfig

                if not isinstance(quantization, BitsAndBytesConfig):
                    raise TypeError(f"expected a transformers BitsAndBytesConfig, got {type(quantization).__name__}")
                if device_map is None:
                    raise ValueError("a bitsandbytes model must be loaded with a device_map (never moved with .to())")
            if device_map is not None:
                targets = device_map.values() if isinstance(device_map, dict) else [device_map]
                for target in targets:
                    _cuda_index(target)
            kwargs["dtype"] = torch.float32  # half precision is slow or missing on CPU
            model = real(*args, **kwargs)
            if quantization is not None:
                model.to = _refuse_to  # bitsandbytes weights already sit where they belong
            return model

        return from_pretrained

    # --- diffusers pipelines -------------------------------------------------------------------

    def install_diffusers(self, monkeypatch, *pipeline_classes) -> "GpuLoading":
        from diffusers import DiffusionPipeline

        for cls in pipeline_classes:
            monkeypatch.setattr(cls, "from_pretrained", self._pipeline_loader(cls, cls.from_pretrained))
        real_to, real_offload = DiffusionPipeline.to, DiffusionPipeline.enable_model_cpu_offload
        loading = self

        def to(pipe, *args, **kwargs):
            inspect.signature(real_to).bind(pipe, *args, **kwargs)
            loading.calls.append(("pipeline.to", args, dict(kwargs)))
            device = kwargs.get("device", next((a for a in args if not isinstance(a, torch.dtype)), None))
            if device is not None and torch.device(device).type == "cuda":
                _cuda_index(device)
                if getattr(pipe, "_standin_offloaded", False):
                    raise ValueError("enable_model_cpu_offload() must not be combined with .to('cuda')")
                return pipe  # stays on the CPU here
            return real_to(pipe, *args, **kwargs)

        def enable_model_cpu_offload(self, gpu_id: int | None = None, device: torch.device | str = None):
            loading.calls.append(("enable_model_cpu_offload", (), {"gpu_id": gpu_id, "device": device}))
            if self.model_cpu_offload_seq is None:
                raise ValueError("Model CPU offload cannot be enabled because no `model_cpu_offload_seq` is set.")
            if device is None or device == "cpu":
                raise RuntimeError("`enable_model_cpu_offload` requires accelerator, but not found")
            torch_device = torch.device(device)
            if gpu_id is not None and torch_device.index is not None:
                raise ValueError(f"You have passed both `gpu_id`={gpu_id} and an index as part of `device`={device}")
            _cuda_index(device)
            self._standin_offloaded = True

        assert _parameters(enable_model_cpu_offload) == _parameters(real_offload), "offload stand-in drifted"
        monkeypatch.setattr(DiffusionPipeline, "to", to)
        monkeypatch.setattr(DiffusionPipeline, "enable_model_cpu_offload", enable_model_cpu_offload)
        return self

    def _pipeline_loader(self, cls, real):
        signature = inspect.signature(real)

        def from_pretrained(*args, **kwargs):
            signature.bind(*args, **kwargs)
            self.calls.append((f"{cls.__name__}.from_pretrained", args, dict(kwargs)))
            quantization = kwargs.pop("quantization_config", None)
            if quantization is not None:
                _check_pipeline_quantization(Path(args[0]), quantization)
            kwargs["dtype"] = torch.float32
            return real(*args, **kwargs)

        return from_pretrained


def _check_pipeline_quantization(folder: Path, config) -> None:
    """Each quantized component exists and gets a config of its own library (diffusers or transformers)."""
    from diffusers import PipelineQuantizationConfig

    if not isinstance(config, PipelineQuantizationConfig):
        raise TypeError(f"expected a diffusers PipelineQuantizationConfig, got {type(config).__name__}")
    components = json.loads((folder / "model_index.json").read_text())
    for name, component_config in (config.quant_mapping or {}).items():
        if name not in components or not isinstance(components[name], list):
            raise ValueError(f"quant_mapping names {name!r}, which is not a component of {folder.name}")
        library = components[name][0]
        config_library = type(component_config).__module__.split(".")[0]
        if config_library != library:
            raise ValueError(f"{name} is a {library} model but its quantization config comes from {config_library}")


def _refuse_to(*args, **kwargs):
    raise ValueError("`.to` is not supported for bitsandbytes models: they load onto their device via device_map")


def _parameters(fn) -> list[tuple[str, object]]:
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]
