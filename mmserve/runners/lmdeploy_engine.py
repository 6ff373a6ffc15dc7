"""What the chat and vision-language runners share about lmdeploy 0.18 (CUDA only).

The engine options (as annotated field types for the runners' pydantic args), the checks that turn
an impossible setup into a ``ConfigError`` before any weights are read, loading a ``pipeline``,
mapping sampling parameters to ``GenerationConfig``, and sizing the KV cache for a GPU share.
lmdeploy is imported lazily: it is in the ``gpu`` extra and does not run on CPU at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import Field

from mmserve.devices import (
    CUDA_CONTEXT_GB,
    device_index,
    gpu_share,
    resolve_device,
)
from mmserve.errors import ConfigError, InvalidInput, Overloaded, model_load_error
from mmserve.lazy import lazy
from mmserve.model_configs import kv_bytes_per_token, text_config
from mmserve.sizing.estimates import DTYPE_BYTES, GB, ModelEstimate, weight_bytes

torch = lazy("torch")  # imported on first use: declaring the family costs no torch

log = logging.getLogger(__name__)

LmdeployEngine = Annotated[
    Literal["turbomind", "pytorch"],
    Field(description="lmdeploy engine: TurboMind (fastest) or PyTorch (widest model support)."),
]
SessionLen = Annotated[
    int | None, Field(ge=1, description="lmdeploy: max tokens per session, prompt + answer (None: the model's).")
]
KvCacheFraction = Annotated[
    # PyTorch asserts 0 < x < 1; TurboMind reads x >= 1 as a number of KV blocks, which is not offered here
    Annotated[float, Field(gt=0, lt=1)] | Literal["auto"],
    Field(
        description="lmdeploy: fraction of the GPU memory free after loading the weights that the KV cache takes; "
        "'auto' sizes it at replica start so the replica stays inside its Ray GPU share (auto_kv_cache).",
    ),
]
KvCacheReserve = Annotated[
    float,
    Field(ge=0, description="lmdeploy 'auto' KV cache: GB of the share kept for activations, CUDA graphs and "
          "the PyTorch engine's prefill reserve."),
]
TensorParallel = Annotated[int, Field(ge=1, description="lmdeploy: tensor-parallel degree (GPUs per replica).")]

DEFAULT_KV_FRACTION = 0.8  # lmdeploy's own default
# Runner args only the lmdeploy families take, and args only the transformers families take.
LMDEPLOY_ONLY = ("lmdeploy_engine", "session_len", "cache_max_entry_count", "kv_cache_reserve_gb", "tp")
TRANSFORMERS_ONLY = ("quantization", "adapters", "max_adapters_per_replica")


def check_family_fields(args) -> None:
    """One args class serves a task's transformers and lmdeploy families: a key set in YAML that the
    chosen family does not use is an error naming it, as an unknown key would be."""
    foreign = TRANSFORMERS_ONLY if args.uses_lmdeploy else LMDEPLOY_ONLY
    given = sorted(set(foreign) & args.model_fields_set)
    if given:
        raise ValueError(f"{', '.join(given)}: not taken by family {args.family!r}")
_DTYPES = ("auto", "float16", "bfloat16")


class LmdeployOptions(Protocol):
    """The fields a runner's args carry for lmdeploy (LlmArgs and VlmArgs both do)."""

    family: str
    model: str
    device: str
    dtype: str
    quantization: str
    lmdeploy_engine: str
    session_len: int | None
    cache_max_entry_count: float | str
    kv_cache_reserve_gb: float
    tp: int


def check_available(opts: LmdeployOptions) -> None:
    """Refuse what cannot work with lmdeploy, cheaply and before anything is loaded."""
    if opts.quantization != "none":
        raise ConfigError(
            "bitsandbytes quantization is a transformers-family option; for lmdeploy serve an AWQ checkpoint",
            field="quantization",
        )
    if not torch.cuda.is_available():
        raise ConfigError(
            f"family {opts.family!r} needs a CUDA GPU (lmdeploy has no CPU engine); use the transformers "
            "family here",
            field="family",
        )
    if not resolve_device(opts.device).startswith("cuda"):
        raise ConfigError(f"family {opts.family!r} runs on 'cuda' only", field="device")
    if opts.dtype not in _DTYPES:
        raise ConfigError(f"lmdeploy supports dtype float16/bfloat16/auto, not {opts.dtype!r}", field="dtype")
    try:
        import lmdeploy  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"family {opts.family!r} needs lmdeploy==0.18.0: pip install 'mmserve[gpu]' ({exc})", field="family"
        ) from exc


def check_tensor_parallel(opts: LmdeployOptions, deployment) -> None:
    """tp > 1 needs that many GPUs visible to the replica, i.e. whole Ray GPUs (a family `check`)."""
    if opts.tp == 1:
        return
    if opts.lmdeploy_engine == "pytorch":
        raise ValueError("runner.tp > 1 with lmdeploy's PyTorch engine starts Ray workers of its own inside the "
                         "replica, which Serve cannot place: use lmdeploy_engine: turbomind for tp > 1")
    if deployment.num_gpus != opts.tp:
        raise ValueError(f"runner.tp={opts.tp} needs deployment.num_gpus: {opts.tp} (TurboMind shards the model "
                         f"over {opts.tp} visible GPUs), not {deployment.num_gpus}")


def load_pipeline(opts: LmdeployOptions):
    """An ``lmdeploy.pipeline`` for the configured engine; a load failure is a ``ConfigError``."""
    check_available(opts)
    import lmdeploy
    from lmdeploy import PytorchEngineConfig, TurbomindEngineConfig

    engine_config = TurbomindEngineConfig if opts.lmdeploy_engine == "turbomind" else PytorchEngineConfig
    model = local_weights(opts.model)
    ratio = opts.cache_max_entry_count
    if ratio == "auto":
        ratio = auto_kv_cache(model, opts)
    try:
        config = engine_config(dtype=opts.dtype, tp=opts.tp, session_len=opts.session_len, cache_max_entry_count=ratio)
        pipe = lmdeploy.pipeline(model, backend_config=config, log_level="WARNING")
    except Exception as exc:  # lmdeploy raises many types for a bad folder or unsupported arch
        raise ConfigError(f"lmdeploy could not load {opts.model!r}: {exc}", field="model") from exc
    log.info("lmdeploy %s engine loaded %s", opts.lmdeploy_engine, opts.model)
    return pipe


def check_seed(seed: int | None) -> None:
    """Seeds are unsigned 64-bit (TurboMind stores ``random_seed`` as uint64), on every backend alike."""
    if seed is not None and not 0 <= seed < 2**64:
        raise InvalidInput(f"seed must be in [0, 2**64), got {seed}", field="seed")


def generation_config(*, max_new_tokens: int, temperature: float, top_p: float, seed: int | None,
                      min_new_tokens: int = 0):
    """``GenerationConfig`` for one request; temperature 0 is greedy decoding.

    lmdeploy asserts ``0 <= temperature <= 2`` when the config is built, so larger values are
    an ``InvalidInput`` here rather than an AssertionError.
    """
    from lmdeploy import GenerationConfig

    if temperature > 2:
        raise InvalidInput("temperature must be at most 2 with the lmdeploy backend", field="temperature")
    check_seed(seed)
    sampling = temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else 1.0,
        top_p=top_p if sampling else 1.0,
        random_seed=seed,
        min_new_tokens=min_new_tokens or None,
    )


# lmdeploy's error codes for requests it refuses; each is the client's problem, not the server's.
CLIENT_ERRORS = {
    "context_length_exceeded": ("the prompt and max_new_tokens do not fit the model's session length "
                                "(each large image costs InternVL up to 13 tiles of 256 tokens)", "messages"),
    "invalid_request": ("lmdeploy refused the request as invalid", "messages"),
    "preprocess_failed": ("the images or messages could not be preprocessed", "images"),
}


def raise_on_error(out) -> None:
    """A ``Response`` that ended in error: a 400 naming the field for what the client sent, else a failure."""
    if out.finish_reason != "error":
        return
    code = getattr(out, "error_code", None)
    detail = getattr(out, "error_message", None) or getattr(out, "text", "") or "no detail"
    if code in CLIENT_ERRORS:
        message, field = CLIENT_ERRORS[code]
        raise InvalidInput(f"{message}: {detail}", field=field)
    raise RuntimeError(f"lmdeploy generation failed ({code or 'error'}): {detail}")


class LmdeployRequest:
    """One generation in an lmdeploy session of its own, so that any thread can abort it.

    Dropping ``stream_infer``'s iterator does not stop lmdeploy: only the session's ``abort()``
    does. In 0.18 an abort is a silent no-op until the request holds an engine handle (during
    preprocessing, or while it waits for a batch slot), so every response that arrives after a
    cancel aborts again. ``abort()`` blocks until lmdeploy's event loop has handled it: callers on
    an event loop run it in a thread.
    """

    def __init__(self, pipe, prompt, gen_config):
        self._session = pipe.session()
        self._outputs = pipe.stream_infer(prompt, sessions=self._session, gen_config=gen_config)
        self._finished = False
        self._cancelled = False
        self.last = None  # the last Response: token counts and finish reason

    def responses(self) -> Iterator:
        """Responses whose ``text`` is the delta since the previous one; errors raise (see raise_on_error)."""
        for out in self._outputs:
            self._finished = out.finish_reason is not None
            if self._cancelled:  # our cancel: a response after it means the engine holds it now
                self.abort()
                break
            if out.finish_reason == "abort":  # the engine's own (sessions stopped, engine going down)
                raise Overloaded("lmdeploy aborted the request (its engine is stopping or restarting sessions); "
                                 "retry")
            raise_on_error(out)
            self.last = out
            yield out
        if self.last is None and not self._cancelled:
            raise RuntimeError("lmdeploy returned no response")

    def abort(self) -> None:
        """Stop generating (thread-safe; a no-op once lmdeploy has finished the request)."""
        self._cancelled = True
        if not self._finished:
            self._session.abort()


def local_weights(model: str) -> str:
    """A local folder for ``model``: hub ids are resolved through the hub cache (downloading if needed),
    as lmdeploy would, so the checkpoint's size is known before the engine starts."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model)
    except Exception as exc:
        raise model_load_error("an lmdeploy model", model, exc) from exc


def checkpoint_gb(folder: str) -> float:
    """GB of weight files in a checkpoint folder: what the engine puts on the GPU (quantized or not)."""
    files = list(Path(folder).glob("*.safetensors")) or list(Path(folder).glob("*.bin"))
    return sum(f.stat().st_size for f in files) / 1e9


def auto_kv_cache(folder: str, opts: LmdeployOptions) -> float:
    """``cache_max_entry_count`` for this replica: its KV cache gets what its Ray GPU share leaves.

    Why not lmdeploy's default: both engines size the cache as a fraction of the memory *free on
    the whole device* after the weights load (TurboMind asks ``cudaMemGetInfo`` after exporting
    the weights; the PyTorch engine ``torch.cuda.mem_get_info`` after building the model, less a
    prefill reserve), ignoring Ray's num_gpus and torch's per-process cap, so 0.8 on a shared GPU
    takes most of what the other replicas need.

    The cache gets ``share - CUDA context - weights - kv_cache_reserve_gb`` (per GPU, weights =
    checkpoint size / tp). TurboMind takes a value >= 1 as a number of KV blocks, so it gets an
    exact block count, whatever its neighbours hold when it starts; the PyTorch engine only takes a
    fraction (0 < x < 1), computed from the memory free now. Outside Ray the share is the whole GPU.
    """
    free, total = (b / GB for b in torch.cuda.mem_get_info(device_index(resolve_device(opts.device))))
    share = gpu_share()
    per_gpu_share = 1.0 if share is None else min(share / opts.tp, 1.0)
    weights = checkpoint_gb(folder) / opts.tp
    cache = kv_cache_gb(per_gpu_share * total, weights, opts.kv_cache_reserve_gb)
    ratio = kv_cache_ratio(cache, weights, free)
    if opts.lmdeploy_engine == "pytorch":
        size: float = ratio
    else:
        block_bytes = TURBOMIND_BLOCK_TOKENS * kv_bytes_per_token(text_config(folder), 2) / opts.tp
        size = max(1, int(cache * GB // block_bytes))
    log.info("lmdeploy KV cache: %.2f GB for a %.2f GPU share (cache_max_entry_count %s)", cache, per_gpu_share, size)
    return size


TURBOMIND_BLOCK_TOKENS = 64  # TurbomindEngineConfig.cache_block_seq_len's default in 0.18


def kv_cache_gb(share_gb: float, weights_gb: float, reserve_gb: float) -> float:
    """GB left for the KV cache in a GPU share after the CUDA context, the weights and a reserve."""
    cache = share_gb - CUDA_CONTEXT_GB - weights_gb - reserve_gb
    if cache <= 0:
        raise ConfigError(
            f"a {share_gb:.1f} GB GPU share cannot hold a {CUDA_CONTEXT_GB} GB CUDA context, {weights_gb:.1f} GB "
            f"of weights, a {reserve_gb:.1f} GB reserve and a KV cache: give the replica more num_gpus",
            field="num_gpus",
        )
    return cache


def kv_cache_ratio(cache_gb: float, weights_gb: float, free_gb: float) -> float:
    """The fraction of the memory free after the weights that is ``cache_gb`` (lmdeploy's own
    meaning of ``cache_max_entry_count`` < 1), at most lmdeploy's default 0.8.

    When the GPU has too little free for the cache, some process holds memory beyond its share:
    refused here rather than failing later inside the engine.
    """
    free_after_weights = free_gb - weights_gb
    if free_after_weights <= 0 or cache_gb > MAX_FREE_FRACTION * free_after_weights:
        raise ConfigError(
            f"the GPU has {max(free_after_weights, 0):.1f} GB free after this replica's weights, too little for "
            f"its {cache_gb:.1f} GB KV cache: other processes hold memory beyond their shares",
            field="num_gpus",
        )
    return min(cache_gb / free_after_weights, DEFAULT_KV_FRACTION)


MAX_FREE_FRACTION = 0.95  # of the free memory one cache may take: activations need a little beside it


def lmdeploy_estimate(task: str, args, parts, dtype: str, text_config: dict) -> ModelEstimate:
    """The planner's estimate of an lmdeploy model: its weights, a fixed reserve and one session's KV."""
    runner = args.runner
    weights = weight_bytes(parts, dtype, runner.quantization)
    reserve = getattr(runner, "kv_cache_reserve_gb", 3.0)
    tokens = runner.session_len or text_config.get("max_position_embeddings", 4096)
    one_session = kv_bytes_per_token(text_config, DTYPE_BYTES[dtype]) * tokens / GB
    return ModelEstimate(
        task, args.name, runner.model, weights / GB, reserve + one_session,
        f"lmdeploy: {reserve:g} GB reserve (kv_cache_reserve_gb) + KV of one {tokens}-token session "
        f"({one_session:.2f} GB); the KV cache takes the rest of the share at replica start",
        kv_fills_share=True)
