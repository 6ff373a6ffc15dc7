"""Chat LLM runner (Qwen family and other chat-templated causal LMs) on transformers or lmdeploy.

transformers: one request generates at a time per replica, because sampling seeds live in torch's
global RNG and ``generate`` is not meant to be shared across threads; throughput comes from more
replicas. lmdeploy (CUDA only): concurrent requests are batched continuously by its engine.
Both backends validate, count, stop and stream the same way.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from queue import Queue
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mmserve.devices import DtypeName, resolve_device, resolve_dtype
from mmserve.errors import ConfigError, InvalidInput
from mmserve.lazy import lazy
from mmserve.model_configs import kv_bytes_per_token, text_config
from mmserve.protocol.llm import ChatMessage, ChatResult, GenerationParams
from mmserve.quantization import Quantization, transformers_bnb_config
from mmserve.runners.family import Family
from mmserve.runners.lmdeploy_engine import (
    KvCacheFraction,
    KvCacheReserve,
    LmdeployEngine,
    LmdeployRequest,
    SessionLen,
    TensorParallel,
    check_available,
    check_family_fields,
    check_seed,
    check_tensor_parallel,
    generation_config,
    lmdeploy_estimate,
    load_pipeline,
)
from mmserve.runners.progress import Cancel, Progress
from mmserve.runners.stopping import StopWhenSet
from mmserve.sizing.estimates import (
    DTYPE_BYTES,
    GB,
    ModelEstimate,
    gpu_dtype,
    model_folder,
    sizes,
    unknown,
    weight_bytes,
)

torch = lazy("torch")  # imported on first use: declaring the family costs no torch

log = logging.getLogger(__name__)


class LlmArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: Literal["transformers-llm", "lmdeploy-llm"] = Field(
        "transformers-llm", description="transformers-llm runs anywhere; lmdeploy-llm batches continuously on CUDA"
    )
    model: str = Field(description="Local model folder or hub id of a chat model with a chat template")
    device: str = Field("auto", description="auto | cpu | cuda[:N]")
    dtype: DtypeName = Field("auto", description="auto | float32 | float16 | bfloat16 (float32 on CPU)")
    quantization: Quantization = Field(
        "none", description="bitsandbytes weight quantization at load time (transformers backend, CUDA only)"
    )
    max_new_tokens: int = Field(512, ge=1, description="Default and upper bound for generated tokens per request")
    min_new_tokens: int = Field(
        0, ge=0, description="fewest tokens a reply runs to (end-of-sequence is masked until then; capped by the "
        "request's max): 0 for real weights, which end where the answer ends; random test weights may end at once")
    max_input_tokens: int = Field(4096, ge=1, description="Longest accepted prompt, chat template included")
    lmdeploy_engine: LmdeployEngine = "turbomind"
    session_len: SessionLen = None
    cache_max_entry_count: KvCacheFraction = "auto"
    kv_cache_reserve_gb: KvCacheReserve = 3.0
    tp: TensorParallel = 1
    adapters: dict[str, str] = Field(
        default_factory=dict, description="LoRA adapters (transformers-llm only): OpenAI model id -> local peft "
        "adapter folder; loaded on demand per replica through Serve model multiplexing")
    max_adapters_per_replica: int = Field(
        4, ge=1, description="adapters held per replica at once; the least recently used one is unloaded beyond")

    @property
    def uses_lmdeploy(self) -> bool:
        return self.family == "lmdeploy-llm"

    @model_validator(mode="after")
    def _fields_fit_the_family(self) -> "LlmArgs":
        check_family_fields(self)  # e.g. LoRA adapters are served by transformers-llm only
        for name in self.adapters:
            if not name or any(c.isspace() or c == "#" for c in name):
                raise ValueError(f"adapters: {name!r} is not a valid model id (no spaces or '#')")
        return self


class LlmRunner:
    """Loads a chat model once; ``chat`` answers whole, ``stream`` yields text as it is generated."""

    def __init__(self, args: LlmArgs):
        self.args = args
        self.device = resolve_device(args.device)
        self.model = self.pipe = None
        self._max_input = args.max_input_tokens
        self._lock = threading.Lock()
        self.progress = Progress()  # generated tokens (ModelReplica.progress reports them)
        self.adapter_loads: dict[str, int] = {}  # adapter -> times loaded on this replica
        self._adapters: set[str] = set()  # loaded into self.model now
        if args.uses_lmdeploy:
            check_available(args)  # no CUDA, quantization, float32: refused before anything is read
            self.tokenizer = _load_tokenizer(args.model)  # same template lmdeploy applies; checks prompt length
            self.pipe = load_pipeline(args)
            # lmdeploy fails a prompt as long as its session; refuse it up front like an over-long one
            self._max_input = min(args.max_input_tokens, self.pipe.async_engine.session_len - 1)
            log.info("loaded chat model %s with lmdeploy (%s engine)", args.model, args.lmdeploy_engine)
            return

        dtype = resolve_dtype(args.dtype, self.device)
        quantization_config = transformers_bnb_config(args.quantization, self.device, dtype)
        self.tokenizer = _load_tokenizer(args.model)
        from transformers import AutoModelForCausalLM

        try:
            self.model = AutoModelForCausalLM.from_pretrained(
                args.model, dtype=dtype, device_map=self.device, quantization_config=quantization_config
            ).eval()
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load chat model {args.model!r}: {e}", field="model") from e
        eos = self.model.generation_config.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        for name, folder in args.adapters.items():  # fail at start, not at a request, on a missing folder
            if not (Path(folder) / "adapter_config.json").is_file():
                raise ConfigError(f"adapter {name!r}: {folder!r} is not a peft adapter folder "
                                  "(no adapter_config.json)", field="adapters")
        log.info("loaded chat model %s on %s (%s, quantization=%s)", args.model, self.device, dtype, args.quantization)

    def chat(self, messages: Sequence[ChatMessage], params: GenerationParams = GenerationParams(),
             adapter: str | None = None) -> ChatResult:
        """Generate the whole assistant reply (with the LoRA `adapter` applied, else the bare model)."""
        self._check_adapter(adapter)
        prompt_ids, max_new = self._prepare(messages, params)
        if self.pipe is not None:  # a stream, so that a stop string ends generation where it appears
            stream = _LmdeployStream(self, messages, params, max_new)
            for _ in stream:
                pass
            return stream.result
        with self._lock, self._adapter_applied(adapter), _seeded(params.seed):
            output = self.model.generate(**self._generate_kwargs(prompt_ids, params, max_new))
        new_ids = output[0, prompt_ids.shape[1] :].tolist()
        trimmer = _StopTrimmer(params.stop)
        text = trimmer.feed(self.tokenizer.decode(new_ids, skip_special_tokens=True)) + trimmer.flush()
        return self._result(text, prompt_ids, new_ids, max_new, trimmer.done)

    def stream(self, messages: Sequence[ChatMessage], params: GenerationParams = GenerationParams(),
               adapter: str | None = None) -> ChatStream:
        """Start generating now and return an iterator of text deltas (see ``ChatStream``).

        Bad input raises here, before any delta, so callers can still answer with an error status.
        """
        self._check_adapter(adapter)
        prompt_ids, max_new = self._prepare(messages, params)
        if self.pipe is not None:
            return _LmdeployStream(self, messages, params, max_new)
        return _TransformersStream(self, prompt_ids, params, max_new, adapter)

    # ------------------------------------------------------------ LoRA adapters (transformers only)
    def load_adapter(self, name: str) -> None:
        """Load the configured adapter `name` into the model (peft, through transformers' adapter API);
        a no-op when it is loaded already. The deployment calls this from `@serve.multiplexed`."""
        self._check_adapter(name)
        with self._lock:
            self._load_locked(name)

    def unload_adapter(self, name: str) -> None:
        """Free the adapter's weights (Serve evicted it, least recently used first)."""
        with self._lock:
            if name in self._adapters:
                self._adapters.discard(name)
                self.model.delete_adapter(name)
                log.info("unloaded adapter %s", name)

    @property
    def loaded_adapters(self) -> list[str]:
        return sorted(self._adapters)

    def _check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.args.adapters:
            served = ", ".join(self.args.adapters) or "none"
            raise InvalidInput(f"adapter {adapter!r} is not configured for this model (adapters: {served})",
                               field="model")

    def _load_locked(self, name: str) -> None:
        if name in self._adapters:
            return
        try:
            self.model.load_adapter(self.args.adapters[name], adapter_name=name)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load adapter {name!r}: {e}", field="adapters") from e
        self._adapters.add(name)
        self.adapter_loads[name] = self.adapter_loads.get(name, 0) + 1
        log.info("loaded adapter %s from %s", name, self.args.adapters[name])

    @contextmanager
    def _adapter_applied(self, adapter: str | None):
        """The model as one request needs it: its adapter active, or every adapter off (the caller
        holds the lock, so requests with different adapters never overlap)."""
        if adapter is not None:
            self._load_locked(adapter)  # evicted between Serve's load and this request: load again
            self.model.enable_adapters()
            self.model.set_adapter(adapter)
        elif self._adapters:
            self.model.disable_adapters()
        yield

    def warmup(self) -> None:
        """One short greedy reply, so the first request does not pay for lazy set-up."""
        self.chat([ChatMessage(role="user", content="hi")], GenerationParams(max_new_tokens=2, temperature=0.0))

    def close(self) -> None:
        """Stop the lmdeploy engine (nothing to release for transformers)."""
        if self.pipe is not None:
            self.pipe.close()

    def _prepare(self, messages: Sequence[ChatMessage], params: GenerationParams) -> tuple[torch.Tensor, int]:
        if not messages:
            raise InvalidInput("messages must not be empty", field="messages")
        for m in messages:
            if m.role not in ("system", "user", "assistant") or not isinstance(m.content, str):
                raise InvalidInput("each message needs a role (system|user|assistant) and string content", field="messages")
        if params.max_new_tokens is not None and params.max_new_tokens < 1:
            raise InvalidInput("max_new_tokens must be at least 1", field="max_new_tokens")
        if params.temperature < 0:
            raise InvalidInput("temperature must be >= 0", field="temperature")
        if not 0 < params.top_p <= 1:
            raise InvalidInput("top_p must be in (0, 1]", field="top_p")
        check_seed(params.seed)
        if params.stop is not None and not all(isinstance(s, str) and s for s in params.stop):
            raise InvalidInput("stop must be a list of non-empty strings", field="stop")

        prompt = self.tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages], add_generation_prompt=True, tokenize=False
        )
        ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        if ids.shape[1] > self._max_input:
            raise InvalidInput(f"prompt is {ids.shape[1]} tokens, the limit is {self._max_input}", field="messages")
        max_new = min(params.max_new_tokens or self.args.max_new_tokens, self.args.max_new_tokens)
        return (ids if self.model is None else ids.to(self.model.device)), max_new

    def _generate_kwargs(
        self, prompt_ids: torch.Tensor, params: GenerationParams, max_new: int, *, streamer=None, cancel=None
    ) -> dict:
        criteria = []
        if params.stop:
            criteria.append(_StopOnText(self.tokenizer, params.stop, prompt_ids.shape[1]))
        criteria.append(StopWhenSet(cancel or _NEVER_CANCELLED, self.progress))  # also counts tokens
        kw = dict(
            input_ids=prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            max_new_tokens=max_new,
            stopping_criteria=criteria,
            streamer=streamer,
        )
        if self.args.min_new_tokens:
            kw["min_new_tokens"] = min(self.args.min_new_tokens, max_new)
        if params.temperature == 0:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        return kw

    def _result(self, text: str, prompt_ids: torch.Tensor, new_ids: list[int], max_new: int, stopped: bool) -> ChatResult:
        ended = stopped or (bool(new_ids) and new_ids[-1] in self._eos_ids) or len(new_ids) < max_new
        return ChatResult(
            text=text,
            prompt_tokens=prompt_ids.shape[1],
            completion_tokens=len(new_ids),
            finish_reason="stop" if ended else "length",
        )


class ChatStream(Iterator[str]):
    """Text deltas as the model generates them; ``result`` holds the ChatResult once exhausted.

    Deltas are released token by token, except that bytes of an unfinished UTF-8 character and text
    that may begin a stop string wait for the next token. The deltas join to exactly what ``chat``
    returns. ``cancel()`` stops generation early (client gone) and may be called from any thread,
    also while another thread is inside ``next()``; ``close()`` is for the iterating thread.
    """

    result: ChatResult | None = None
    _deltas: Iterator[str]

    def __next__(self) -> str:
        return next(self._deltas)

    @abstractmethod
    def cancel(self) -> None:
        """Stop generating; thread-safe."""

    def close(self) -> None:
        """Stop generating and release the iterator (from the thread that iterates)."""
        self.cancel()
        self._deltas.close()


class _TransformersStream(ChatStream):
    """Generation runs in its own thread and hands each token over through a queue."""

    def __init__(self, runner: LlmRunner, prompt_ids: torch.Tensor, params: GenerationParams, max_new: int,
                 adapter: str | None = None):
        self._runner, self._prompt_ids, self._params, self._max_new = runner, prompt_ids, params, max_new
        self._adapter = adapter
        self._tokens = _TokenQueue()
        self._cancel = Cancel(runner.progress)
        self._error: BaseException | None = None
        kwargs = runner._generate_kwargs(prompt_ids, params, max_new, streamer=self._tokens, cancel=self._cancel)
        self._thread = threading.Thread(target=self._generate, args=(kwargs,), name="llm-generate", daemon=True)
        self._thread.start()
        self._deltas = self._iterate()

    def cancel(self) -> None:
        """The generating thread stops after the current token."""
        self._cancel.set()

    def _generate(self, kwargs: dict) -> None:
        try:
            with self._runner._lock, self._runner._adapter_applied(self._adapter), _seeded(self._params.seed):
                if not self._cancel.is_set():
                    self._runner.model.generate(**kwargs)
        except BaseException as e:  # re-raised in the consumer's thread
            self._error = e
        finally:
            self._tokens.end()

    def _iterate(self) -> Iterator[str]:
        detok = _Detokenizer(self._runner.tokenizer)
        trimmer = _StopTrimmer(self._params.stop)
        parts = []
        while (ids := self._tokens.queue.get()) is not None:
            if delta := trimmer.feed(detok.add(ids)):
                parts.append(delta)
                yield delta
        if tail := trimmer.feed(detok.flush()) + trimmer.flush():
            parts.append(tail)
            yield tail
        self._thread.join()
        if self._error is not None:
            raise self._error
        self.result = self._runner._result("".join(parts), self._prompt_ids, detok.ids, self._max_new, trimmer.done)


class _LmdeployStream(ChatStream):
    """lmdeploy's ``stream_infer`` for one request, in a session of its own so that it can be aborted.

    lmdeploy's own ``stop_words`` are token-level in 0.18 (a stop string longer than one token is
    ignored; a token that contains one is dropped whole, with any text before it), so stop strings
    are cut here, as for transformers, and end the request at once.
    """

    def __init__(self, runner: LlmRunner, messages: Sequence[ChatMessage], params: GenerationParams, max_new: int):
        config = generation_config(
            max_new_tokens=max_new, temperature=params.temperature, top_p=params.top_p, seed=params.seed,
            min_new_tokens=min(runner.args.min_new_tokens, max_new),
        )
        prompt = [{"role": m.role, "content": m.content} for m in messages]
        self._request = LmdeployRequest(runner.pipe, prompt, config)
        self._progress = runner.progress
        self._deltas = self._iterate(params.stop)

    def cancel(self) -> None:
        """The engine frees the request's slot and KV cache blocks (blocks until lmdeploy answers)."""
        self._progress.cancelled()
        self._request.abort()

    def _iterate(self, stops: list[str] | None) -> Iterator[str]:
        trimmer = _StopTrimmer(stops)
        parts, counted = [], 0
        for out in self._request.responses():
            self._progress.step(max(out.generate_token_len - counted, 0))
            counted = max(counted, out.generate_token_len)
            if delta := trimmer.feed(out.text):
                parts.append(delta)
                yield delta
            if trimmer.done:
                break
        self._request.abort()  # a stop string appeared; no-op once lmdeploy has finished
        if tail := trimmer.flush():
            parts.append(tail)
            yield tail
        last = self._request.last
        if last is None:  # cancelled before the engine answered: no result
            return
        self.result = ChatResult(
            text="".join(parts),
            prompt_tokens=last.input_token_len,
            completion_tokens=last.generate_token_len,
            finish_reason="length" if last.finish_reason == "length" and not trimmer.done else "stop",
        )


class _TokenQueue:
    """The streamer generate() feeds from its thread (duck-typed transformers BaseStreamer)."""

    def __init__(self):
        self.queue: Queue[list[int] | None] = Queue()
        self._prompt_skipped = False

    def put(self, value: torch.Tensor) -> None:
        if self._prompt_skipped:
            self.queue.put(value.reshape(-1).tolist())
        self._prompt_skipped = True  # generate() first puts the prompt

    def end(self) -> None:
        self.queue.put(None)


class _Detokenizer:
    """Incremental decoding that never splits a character: what it returns joins to decode(all ids).

    Decodes a short window of ids (prefix..end) and releases the text past the window's already
    released part, unless it ends in U+FFFD, i.e. a multi-byte character is still incomplete.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._prefix = self._read = 0

    def add(self, ids: list[int]) -> str:
        self.ids.extend(ids)
        done = self._decode(self._prefix, self._read)
        text = self._decode(self._prefix, len(self.ids))
        if len(text) <= len(done) or text.endswith("\ufffd"):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return text[len(done) :]

    def flush(self) -> str:
        return self._decode(self._prefix, len(self.ids))[len(self._decode(self._prefix, self._read)) :]

    def _decode(self, start: int, end: int) -> str:
        return self.tokenizer.decode(self.ids[start:end], skip_special_tokens=True)


class _StopTrimmer:
    """Cuts text at the first stop string, withholding any tail that may be the start of one."""

    def __init__(self, stops: list[str] | None):
        self.stops = stops or []
        self.done = False
        self._held = ""

    def feed(self, piece: str) -> str:
        if self.done:
            return ""
        text = self._held + piece
        cuts = [i for s in self.stops if (i := text.find(s)) >= 0]
        if cuts:
            self.done, self._held = True, ""
            return text[: min(cuts)]
        hold = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


# generate() only calls stopping criteria; plain callables keep transformers out of module import.
class _StopOnText:
    """Ends generation once the reply, decoded as it will be returned, contains a stop string."""

    def __init__(self, tokenizer, stops: list[str], prompt_len: int):
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        text = self.tokenizer.decode(input_ids[0, self.prompt_len :].tolist(), skip_special_tokens=True)
        hit = any(s in text for s in self.stops)
        return torch.full((input_ids.shape[0],), hit, dtype=torch.bool, device=input_ids.device)


@contextmanager
def _seeded(seed: int | None):
    """Seed torch's RNG for one generation and restore it afterwards (the caller holds the lock)."""
    if seed is None:
        yield
        return
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def _load_tokenizer(model: str):
    """The model's tokenizer, which must carry a chat template; a missing folder fails before any load."""
    if model.startswith(("/", ".", "~")) and not Path(model).expanduser().is_dir():
        raise ConfigError(f"model folder {model!r} does not exist", field="model")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load chat model {model!r}: {e}", field="model") from e
    if not tokenizer.chat_template:
        raise ConfigError(f"model {model!r} has no chat template", field="model")
    return tokenizer


_NEVER_CANCELLED = threading.Event()  # generate() without a cancel: still counted

def estimate(args, image_side: int) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model, args.family.shipped)
    parts = sizes(runner.model, args.family.shipped)
    if parts is None:
        return unknown(args, "no config to size it")
    dtype = gpu_dtype(runner.dtype, "bfloat16")
    text = text_config(folder)
    if runner.uses_lmdeploy:
        return lmdeploy_estimate("llm", args, parts, dtype, text)
    per_token = kv_bytes_per_token(text, DTYPE_BYTES[dtype])
    tokens = runner.max_input_tokens + runner.max_new_tokens
    prefill = runner.max_input_tokens * (3 * text["intermediate_size"] + 4 * text["hidden_size"]) * DTYPE_BYTES[dtype]
    return ModelEstimate(
        "llm", args.name, runner.model, weight_bytes(parts, dtype, runner.quantization) / GB,
        (per_token * tokens + prefill) / GB,
        f"KV {per_token / 1e3:.0f} kB/token x {tokens} tokens x 1 session (generation is serialized per "
        f"replica) + prefill activations of one {runner.max_input_tokens}-token prompt")


TINY = {"qwen": "mmserve.tiny.qwen", "qwen_lora": "mmserve.tiny.lora"}  # LoRA adapters of the tiny qwen, built after it
SHIPPED = {"Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b-instruct"}
TRANSFORMERS = Family("transformers-llm", "llm", LlmArgs, LlmRunner, estimate=estimate, path_fields=("model", "adapters"),
                      tiny=TINY, shipped=SHIPPED)
LMDEPLOY = Family("lmdeploy-llm", "llm", LlmArgs, LlmRunner, check=check_tensor_parallel, estimate=estimate, tiny=TINY,
                  shipped=SHIPPED)
