"""A CUDA GPU for CTranslate2's Whisper in CI: `ctranslate2.models.Whisper` built on a GPU, checked
as CTranslate2 4.x checks it, then run on the CPU.

The stand-in has the real constructor's parameters, records the arguments it was given and refuses
what CTranslate2 refuses (a model path that is not a str, an unknown device or compute type, a
compute type the GPU cannot run, a device index the process cannot see); it then loads the same
model on the CPU with int8, so faster-whisper's whole path (features, decoding, word alignment)
runs for real. Install it together with `tests.standins.cuda.FakeGpu`, which makes torch report the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ctranslate2

REAL = ctranslate2.models.Whisper
COMPUTE_TYPES = {"default", "auto", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16",
                 "float16", "bfloat16", "float32"}
# CTranslate2's CUDA types on compute capability >= 8.0 (`ctranslate2.get_supported_compute_types("cuda")`)
CUDA_COMPUTE_TYPES = {"float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16"}


@dataclass
class GpuWhisper:
    count: int = 1
    calls: list[dict] = field(default_factory=list)

    def install(self, monkeypatch) -> "GpuWhisper":
        stand_in = self

        def Whisper(model_path: str, device: str = "cpu", *, device_index=0, compute_type="default",  # noqa: N802
                    inter_threads: int = 1, intra_threads: int = 0, max_queued_batches: int = 0,
                    flash_attention: bool = False, tensor_parallel: bool = False, files=None):
            call = dict(model_path=model_path, device=device, device_index=device_index, compute_type=compute_type,
                        inter_threads=inter_threads, intra_threads=intra_threads)
            stand_in.calls.append(call)
            if not isinstance(model_path, str):
                raise TypeError("__init__(): incompatible constructor arguments")
            if device not in ("cpu", "cuda", "auto"):
                raise ValueError(f"unsupported device {device}")
            if compute_type not in COMPUTE_TYPES:
                raise ValueError(f"invalid compute type: {compute_type}")
            indexes = device_index if isinstance(device_index, list) else [device_index]
            if device in ("cuda", "auto"):
                if any(not 0 <= i < stand_in.count for i in indexes):
                    raise RuntimeError("CUDA failed with error invalid device ordinal")
                if compute_type not in CUDA_COMPUTE_TYPES | {"default", "auto"}:
                    raise ValueError(f"Requested {compute_type} compute type, but the target device or backend do "
                                     f"not support efficient {compute_type} computation.")
            return REAL(model_path, "cpu", compute_type="int8", inter_threads=inter_threads,
                        intra_threads=intra_threads, files=files)

        monkeypatch.setattr(ctranslate2.models, "Whisper", Whisper)
        return self
