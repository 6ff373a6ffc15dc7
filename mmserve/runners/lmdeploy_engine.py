"""What the chat and vision-language runners share about lmdeploy 0.18 (CUDA only).

The engine options (as annotated field types for the runners' pydantic args), the checks that turn
an impossible setup into a ``ConfigError`` before any weights are read, loading a ``pipeline``,
mapping sampling parameters to ``GenerationConfig``, and sizing the KV cache for a GPU share.
lmdeploy is imported lazily: it is in the ``gpu`` extra and does not run on CPU at all.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal, Protocol

import torch
from pydantic import Field

from mmserve.devices import resolve_device
from mmserve.errors import ConfigError, InvalidInput

log = logging.getLogger(__name__)

LmdeployEngine = Annotated[
    Literal["turbomind", "pytorch"],
    Field(description="lmdeploy engine: TurboMind (fastest) or PyTorch (widest model support)."),
]
SessionLen = Annotated[
    int | None, Field(ge=1, description="lmdeploy: max tokens per session, prompt + answer (None: the model's).")
]
KvCacheFraction = Annotated[
    float,
    Field(
        gt=0,
        lt=1,  # both engines assert 0 < x < 1 in 0.18
        description="lmdeploy: fraction of the GPU memory free after loading the weights that the KV cache takes "
        "(see kv_cache_ratio for a replica that shares its GPU).",
    ),
]
TensorParallel = Annotated[int, Field(ge=1, description="lmdeploy: tensor-parallel degree (GPUs per replica).")]

DEFAULT_KV_FRACTION = 0.8  # lmdeploy's own default
_DTYPES = ("auto", "float16", "bfloat16")


class LmdeployOptions(Protocol):
    """The fields a runner's args carry for lmdeploy (LlmArgs and VlmArgs both do)."""

    model: str
    device: str
    dtype: str
    quantization: str
    lmdeploy_engine: str
    session_len: int | None
    cache_max_entry_count: float
    tp: int


def check_available(opts: LmdeployOptions) -> None:
    """Refuse what cannot work with lmdeploy, cheaply and before anything is loaded."""
    if opts.quantization != "none":
        raise ConfigError(
            "bitsandbytes quantization is a transformers-backend option; for lmdeploy serve an AWQ checkpoint",
            field="quantization",
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            "backend 'lmdeploy' needs a CUDA GPU (it has no CPU engine); use backend 'transformers' here",
            field="backend",
        )
    if not resolve_device(opts.device).startswith("cuda"):
        raise ConfigError("backend 'lmdeploy' runs on 'cuda' only", field="device")
    if opts.dtype not in _DTYPES:
        raise ConfigError(f"lmdeploy supports dtype float16/bfloat16/auto, not {opts.dtype!r}", field="dtype")
    try:
        import lmdeploy  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"backend 'lmdeploy' needs lmdeploy==0.18.0: pip install 'mmserve[gpu]' ({exc})", field="backend"
        ) from exc


def load_pipeline(opts: LmdeployOptions):
    """An ``lmdeploy.pipeline`` for the configured engine; a load failure is a ``ConfigError``."""
    check_available(opts)
    import lmdeploy
    from lmdeploy import PytorchEngineConfig, TurbomindEngineConfig

    engine_config = TurbomindEngineConfig if opts.lmdeploy_engine == "turbomind" else PytorchEngineConfig
    config = engine_config(
        dtype=opts.dtype,
        tp=opts.tp,
        session_len=opts.session_len,
        cache_max_entry_count=opts.cache_max_entry_count,
    )
    try:
        pipe = lmdeploy.pipeline(opts.model, backend_config=config, log_level="WARNING")
    except Exception as exc:  # lmdeploy raises many types for a bad folder or unsupported arch
        raise ConfigError(f"lmdeploy could not load {opts.model!r}: {exc}", field="model") from exc
    log.info("lmdeploy %s engine loaded %s", opts.lmdeploy_engine, opts.model)
    return pipe


def generation_config(*, max_new_tokens: int, temperature: float, top_p: float, seed: int | None):
    """``GenerationConfig`` for one request; temperature 0 is greedy decoding.

    lmdeploy asserts ``0 <= temperature <= 2`` when the config is built, so larger values are
    an ``InvalidInput`` here rather than an AssertionError.
    """
    from lmdeploy import GenerationConfig

    if temperature > 2:
        raise InvalidInput("temperature must be at most 2 with the lmdeploy backend", field="temperature")
    sampling = temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else 1.0,
        top_p=top_p if sampling else 1.0,
        random_seed=seed,
    )


def raise_on_error(out) -> None:
    """A ``Response`` that ended in error or abort carries no answer: fail loudly."""
    if out.finish_reason in ("error", "abort"):
        raise RuntimeError(f"lmdeploy generation failed ({out.finish_reason}): {out.error_message or 'no detail'}")


def kv_cache_ratio(num_gpus: float, weights_gb: float, gpu_total_gb: float, reserve_gb: float = 3.0) -> float:
    """``cache_max_entry_count`` that keeps a replica inside its Ray GPU share.

    What lmdeploy 0.18 does with the value (read in its source): both engines take it as a
    fraction of the memory *free on the device after the weights are loaded* -- TurboMind asks
    ``cudaMemGetInfo`` when it creates the engine, after exporting the weights; the PyTorch engine
    uses ``torch.cuda.mem_get_info`` after building the model and first subtracts a runtime
    reserve (prefill logits: ``(max_prefill_token_num + 2 * max_batch_size) * vocab * 2`` bytes,
    ~2.6 GB for a 152k vocabulary). Both require ``0 < x < 1``. The free memory is device-wide: it
    ignores Ray's num_gpus and torch's per-process cap (``cap_gpu_memory``), so the default 0.8 on
    a shared GPU takes 80% of everything left, starving the replicas beside it (and overruns the
    torch cap with the PyTorch engine, whose cache is a torch allocation).

    This returns the ratio that gives the cache ``share - weights - reserve`` GB when the replica
    starts on an otherwise empty GPU: ``(share - weights - reserve) / (total - weights)``, never
    above lmdeploy's default 0.8. If other replicas already hold memory when it starts, it gets
    less (safe, not optimal). ``weights_gb`` is what one GPU holds (the checkpoint size / tp);
    ``reserve_gb`` covers activations, the runtime reserve above and CUDA graphs.
    """
    if num_gpus <= 0 or gpu_total_gb <= 0 or weights_gb < 0 or reserve_gb < 0:
        raise ValueError("num_gpus and gpu_total_gb must be positive, weights_gb and reserve_gb non-negative")
    share_gb = min(num_gpus, 1.0) * gpu_total_gb
    cache_gb = share_gb - weights_gb - reserve_gb
    if cache_gb <= 0:
        raise ConfigError(
            f"a {share_gb:.1f} GB GPU share cannot hold {weights_gb:.1f} GB of weights, a {reserve_gb:.1f} GB "
            "reserve and a KV cache: give the replica more num_gpus",
            field="num_gpus",
        )
    return min(cache_gb / (gpu_total_gb - weights_gb), DEFAULT_KV_FRACTION)
