"""Vision-language question answering (InternVL, LLaVA family) over one or more images.

Two interchangeable backends behind one runner: ``transformers`` (any
``AutoModelForImageTextToText`` folder, CPU or GPU, optional bitsandbytes quantization) and
``lmdeploy`` (TurboMind/PyTorch engines with continuous batching and a paged KV cache; CUDA only).
Images arrive already decoded (``mmserve.media.decode_image``); the runner only checks counts and
sizes, so a bad request is an ``InvalidInput`` before any model work starts.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import Literal, Protocol

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mmserve.devices import DtypeName, resolve_device, resolve_dtype
from mmserve.errors import ConfigError, InvalidInput, PayloadTooLarge
from mmserve.lazy import lazy
from mmserve.model_configs import kv_bytes_per_token, text_config
from mmserve.protocol.llm import FinishReason
from mmserve.protocol.vlm import VlmRequest, VlmResult
from mmserve.quantization import Quantization, transformers_bnb_config
from mmserve.runners.family import Family
from mmserve.runners.lmdeploy_engine import (
    KvCacheFraction,
    KvCacheReserve,
    LmdeployEngine,
    LmdeployRequest,
    SessionLen,
    TensorParallel,
    check_family_fields,
    check_seed,
    check_tensor_parallel,
    generation_config,
    lmdeploy_estimate,
    load_pipeline,
)
from mmserve.runners.stopping import StopWhenSet
from mmserve.sizing.estimates import (
    DTYPE_BYTES,
    GB,
    ModelEstimate,
    gpu_dtype,
    model_folder,
    read_json,
    sizes,
    unknown,
    weight_bytes,
)

torch = lazy("torch")  # imported on first use: declaring the family costs no torch

log = logging.getLogger(__name__)


class VlmArgs(BaseModel):
    """Configuration of one vision-language model replica."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["transformers-vlm", "lmdeploy-vlm"] = Field(
        "transformers-vlm",
        description="'lmdeploy-vlm' batches requests on the GPU; 'transformers-vlm' also runs on CPU.",
    )
    model: str = Field(description="Local model folder or hub id (InternVL-hf, LLaVA-hf layouts).")
    device: str = Field("auto", description="'auto', 'cpu' or 'cuda'; lmdeploy needs 'cuda'.")
    dtype: DtypeName = Field("auto", description="'auto': float16 on GPU, float32 on CPU.")
    quantization: Quantization = Field(
        "none", description="bitsandbytes weight quantization (transformers backend, CUDA only)."
    )
    max_images: int = Field(4, ge=0, description="Most images one request may carry.")
    allow_text_only: bool = Field(True, description="Accept questions without an image.")
    max_new_tokens: int = Field(512, ge=1, description="Cap on generated tokens; larger requests are capped.")
    min_new_tokens: int = Field(
        0, ge=0, description="fewest tokens a reply runs to (end-of-sequence is masked until then; capped by the "
        "request's max): 0 for real weights, which end where the answer ends; random test weights may end at once")
    max_image_pixels: int | None = Field(
        4096 * 4096, ge=1, description="Largest width*height accepted per image (None: no limit)."
    )
    lmdeploy_engine: LmdeployEngine = "turbomind"
    session_len: SessionLen = None
    cache_max_entry_count: KvCacheFraction = "auto"
    kv_cache_reserve_gb: KvCacheReserve = 3.0
    tp: TensorParallel = 1

    @property
    def uses_lmdeploy(self) -> bool:
        return self.family == "lmdeploy-vlm"

    @model_validator(mode="after")
    def _fields_fit_the_family(self) -> "VlmArgs":
        check_family_fields(self)
        return self


class VlmStream(Iterator[str]):
    """Text deltas as they are generated; ``result`` holds the VlmResult once exhausted.

    ``cancel()`` stops generation from any thread, also while another is inside ``next()``;
    ``close()`` is for the iterating thread.
    """

    result: VlmResult | None = None
    _deltas: Iterator[str]

    def __next__(self) -> str:
        return next(self._deltas)

    def cancel(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.cancel()
        self._deltas.close()


class VlmBackend(Protocol):
    """What the runner needs from an engine; requests arrive validated, max_new_tokens and min_new_tokens
    filled in."""

    def stream(self, req: VlmRequest) -> VlmStream: ...

    def close(self) -> None: ...


def chat_messages(req: VlmRequest) -> list[dict]:
    """One user turn: an image part per image, then the question (the order InternVL/LLaVA train on)."""
    content = [{"type": "image"} for _ in req.images] + [{"type": "text", "text": req.question}]
    return [{"role": "user", "content": content}]


class TransformersVlmBackend:
    """``AutoModelForImageTextToText`` + ``AutoProcessor``: one request at a time per replica.

    Generation is serialized by a lock: HF ``generate`` does not batch concurrent calls, and a
    per-request seed must not be disturbed by another request's sampling.
    """

    def __init__(self, args: VlmArgs):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = resolve_device(args.device)
        self.dtype = resolve_dtype(args.dtype, self.device)
        # Weights load straight onto their device (no CPU copy first); quantized ones can only load so.
        kwargs: dict = {"dtype": self.dtype, "device_map": {"": self.device}}
        if args.quantization != "none":
            kwargs["quantization_config"] = transformers_bnb_config(args.quantization, self.device, self.dtype)
        try:
            self.processor = AutoProcessor.from_pretrained(args.model)
            self.model = AutoModelForImageTextToText.from_pretrained(args.model, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"could not load a vision-language model from {args.model!r}: {exc}", field="model"
            ) from exc
        self.model.eval()
        self.tokenizer = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        self.eos = set(eos) if isinstance(eos, (list, tuple)) else {eos}
        self._lock = threading.Lock()
        log.info("loaded %s (%s) on %s/%s", args.model, type(self.model).__name__, self.device, self.dtype)

    def _inputs(self, req: VlmRequest):
        prompt = self.processor.apply_chat_template(chat_messages(req), add_generation_prompt=True, tokenize=False)
        inputs = self.processor(images=req.images or None, text=prompt, return_tensors="pt")
        return inputs.to(self.model.device, dtype=self.dtype)

    def _generate_kwargs(self, req: VlmRequest) -> dict:
        kwargs = {"max_new_tokens": req.max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if req.min_new_tokens:
            kwargs["min_new_tokens"] = req.min_new_tokens
        if req.temperature > 0:
            kwargs.update(do_sample=True, temperature=req.temperature, top_p=req.top_p)
        else:  # override sampling defaults a checkpoint's generation_config may carry
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _run(self, req: VlmRequest, inputs, **extra) -> torch.Tensor:
        with self._lock, torch.inference_mode():
            if req.seed is not None:
                torch.manual_seed(req.seed)
            return self.model.generate(**inputs, **self._generate_kwargs(req), **extra)

    def stream(self, req: VlmRequest) -> VlmStream:
        return _TransformersVlmStream(self, req)

    def close(self) -> None:
        pass


class LmdeployVlmBackend:
    """lmdeploy 0.18 ``pipeline``: continuous batching across concurrent requests, CUDA only."""

    def __init__(self, args: VlmArgs):
        self.pipe = load_pipeline(args)

    @staticmethod
    def _prompt(req: VlmRequest):
        # lmdeploy's (prompt, [PIL images]) form; a text-only question is a plain string.
        return (req.question, list(req.images)) if req.images else req.question

    @staticmethod
    def _gen_config(req: VlmRequest):
        return generation_config(
            max_new_tokens=req.max_new_tokens, temperature=req.temperature, top_p=req.top_p, seed=req.seed,
            min_new_tokens=req.min_new_tokens,
        )

    def stream(self, req: VlmRequest) -> VlmStream:
        return _LmdeployVlmStream(LmdeployRequest(self.pipe, self._prompt(req), self._gen_config(req)))

    def close(self) -> None:
        self.pipe.close()


class _TransformersVlmStream(VlmStream):
    """``generate`` on a thread of its own, feeding a TextIteratorStreamer; stops between tokens on cancel."""

    def __init__(self, backend: TransformersVlmBackend, req: VlmRequest):
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        self._backend = backend
        inputs = backend._inputs(req)
        self._prompt_len = inputs["input_ids"].shape[1]
        self._streamer = TextIteratorStreamer(backend.tokenizer, skip_prompt=True, skip_special_tokens=True)
        self._cancel = threading.Event()
        self._output: torch.Tensor | None = None
        self._failure: BaseException | None = None
        stop = StoppingCriteriaList([StopWhenSet(self._cancel)])
        self._thread = threading.Thread(
            target=self._work, args=(req, inputs, stop), name="vlm-generate", daemon=True)
        self._thread.start()
        self._deltas = self._iterate()

    def cancel(self) -> None:
        self._cancel.set()

    def _work(self, req: VlmRequest, inputs, stop) -> None:
        try:
            self._output = self._backend._run(req, inputs, streamer=self._streamer, stopping_criteria=stop)
        except BaseException as exc:  # re-raised in the consumer's thread
            self._failure = exc
        finally:
            self._streamer.end()  # unblocks the consumer even when generate failed

    def _iterate(self) -> Iterator[str]:
        try:
            for delta in self._streamer:
                if delta:
                    yield delta
        finally:
            self._cancel.set()  # closed early: stop generating
            self._thread.join()
        if self._failure is not None:
            raise self._failure
        new_ids = self._output[0, self._prompt_len :].tolist()
        finish: FinishReason = "length"
        if new_ids and new_ids[-1] in self._backend.eos:
            new_ids, finish = new_ids[:-1], "stop"
        text = self._backend.tokenizer.decode(new_ids, skip_special_tokens=True)
        self.result = VlmResult(text=text, prompt_tokens=self._prompt_len, completion_tokens=len(new_ids),
                                finish_reason=finish)


class _LmdeployVlmStream(VlmStream):
    """Text deltas of one lmdeploy request; ``cancel()`` (any thread) aborts it in the engine."""

    def __init__(self, request: LmdeployRequest):
        self._request = request
        self._deltas = self._iterate()

    def cancel(self) -> None:
        self._request.abort()

    def _iterate(self) -> Iterator[str]:
        parts = []
        for out in self._request.responses():
            if out.text:
                parts.append(out.text)
                yield out.text  # deltas, not the text so far
        last = self._request.last
        if last is not None:  # None: cancelled before the engine answered
            self.result = VlmResult(
                text="".join(parts),
                prompt_tokens=last.input_token_len,
                completion_tokens=last.generate_token_len,
                finish_reason="length" if last.finish_reason == "length" else "stop",
            )


class VlmRunner:
    """Validates requests and hands them to the configured backend."""

    def __init__(self, args: VlmArgs):
        self.args = args
        backend_cls = LmdeployVlmBackend if args.uses_lmdeploy else TransformersVlmBackend
        self.backend: VlmBackend = backend_cls(args)

    def answer(self, req: VlmRequest) -> VlmResult:
        stream = self.stream(req)
        for _ in stream:
            pass
        return stream.result

    def stream(self, req: VlmRequest) -> VlmStream:
        """Text deltas as they are generated; validation errors raise here, not on first ``next``."""
        return self.backend.stream(self._validate(req))

    def warmup(self) -> None:
        """One short answer about a small image (vision tower and language model both run once)."""
        image = Image.new("RGB", (64, 64), (128, 96, 64))
        images = [image] if self.args.max_images else []
        self.answer(VlmRequest(question="What colour is this?", images=images, max_new_tokens=2))

    def close(self) -> None:
        self.backend.close()

    def _validate(self, req: VlmRequest) -> VlmRequest:
        args = self.args
        if not isinstance(req.question, str) or not req.question.strip():
            raise InvalidInput("question must be a non-empty string", field="question")
        images = list(req.images or [])
        if len(images) > args.max_images:
            raise InvalidInput(f"{len(images)} images sent; at most {args.max_images} are allowed", field="images")
        if not images and not args.allow_text_only:
            raise InvalidInput("this model needs at least one image", field="images")
        for image in images:
            if not isinstance(image, Image.Image):
                raise InvalidInput("images must be decoded images", field="images")
            width, height = image.size
            if args.max_image_pixels is not None and width * height > args.max_image_pixels:
                raise PayloadTooLarge(
                    f"image is {width}x{height}; the limit is {args.max_image_pixels} pixels", field="images"
                )
        images = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        max_new = args.max_new_tokens if req.max_new_tokens is None else req.max_new_tokens
        if max_new < 1:
            raise InvalidInput("max_new_tokens must be at least 1", field="max_new_tokens")
        if not 0 <= req.temperature <= 2:
            raise InvalidInput("temperature must be between 0 and 2", field="temperature")
        if not 0 < req.top_p <= 1:
            raise InvalidInput("top_p must be in (0, 1]", field="top_p")
        check_seed(req.seed)
        max_new = min(max_new, args.max_new_tokens)
        return dataclasses.replace(req, images=images, max_new_tokens=max_new,
                                   min_new_tokens=min(args.min_new_tokens, max_new))


def estimate(args, image_side: int) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model, args.family.shipped)
    parts = sizes(runner.model, args.family.shipped)
    if parts is None:
        return unknown(args, "no config to size it")
    dtype = gpu_dtype(runner.dtype)
    text = text_config(folder)
    if runner.uses_lmdeploy:
        return lmdeploy_estimate("vlm", args, parts, dtype, text)
    tokens = runner.session_len or 8192
    per_token = kv_bytes_per_token(text, DTYPE_BYTES[dtype])
    vision = read_json(folder, "config.json").get("vision_config", {})
    tiles = 13 * max(runner.max_images, 1)  # up to 12 tiles + a thumbnail per image
    patches = (448 // 14) ** 2
    vision_bytes = tiles * patches * 4 * vision.get("intermediate_size", 4096) * DTYPE_BYTES[dtype]
    return ModelEstimate(
        "vlm", args.name, runner.model, weight_bytes(parts, dtype, runner.quantization) / GB,
        (per_token * tokens + vision_bytes) / GB,
        f"KV {per_token / 1e3:.0f} kB/token x {tokens} tokens x 1 session (serialized) + vision tower "
        f"activations for {tiles} tiles ({runner.max_images} images x 13)")


SHIPPED = {"OpenGVLab/InternVL2_5-4B": "internvl2.5-4b"}  # HF-native InternVLConfig: either backend serves it
TRANSFORMERS = Family("transformers-vlm", "vlm", VlmArgs, VlmRunner, estimate=estimate,
                      tiny={"llava": "mmserve.tiny.llava"}, shipped=SHIPPED)
LMDEPLOY = Family("lmdeploy-vlm", "vlm", VlmArgs, VlmRunner, check=check_tensor_parallel, estimate=estimate,
                  tiny={"internvl": "mmserve.tiny.internvl"}, shipped=SHIPPED)
