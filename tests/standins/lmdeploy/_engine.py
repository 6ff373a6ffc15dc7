"""The stand-in inference engine: a thread of its own that decodes one token per step.

Real lmdeploy runs its engine outside the pipeline's event loop (TurboMind: C++ threads that
signal the loop; PyTorch: an engine loop fed by requests). Here one thread steps every running
request each ``step_s`` seconds; each token is drawn from the model folder's own tokenizer
vocabulary (special and added tokens left out) with a ``random.Random`` seeded from the request's
``random_seed`` (greedy: from the prompt) and the prompt ids, so a seed reproduces its text.

Counters tests can poll: ``tokens(session_id)``, ``total_tokens()``, ``active_sessions()``,
``finished`` (session_id -> 'finish' | 'cancel'), ``steps``.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import unicodedata
import zlib
from collections import defaultdict
from dataclasses import dataclass, field

from .messages import EngineOutput, GenerationConfig, ResponseType

UINT64_LIMIT = 2**64


def _whole_text(text: str) -> bool:
    return bool(text) and not any(c == '\ufffd' or (unicodedata.category(c) == 'Cc' and c not in '\n\t')
                                  for c in text)


class StandinTokenizer:
    """The slice of ``lmdeploy.Tokenizer`` the pipeline uses, over the folder's HF tokenizer."""

    def __init__(self, model_path: str, trust_remote_code: bool = False):
        from transformers import AutoTokenizer

        self.model = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        self.eos_token_id = self.model.eos_token_id
        # what the stand-in engine samples from: plain tokens that decode to whole characters on
        # their own (byte-level pieces of a character would often leave the text unfinished)
        added = set(self.model.added_tokens_decoder) | set(self.model.all_special_ids)
        self.plain_ids = sorted(i for i in self.model.get_vocab().values()
                                if i not in added and _whole_text(self.model.decode([i])))

    def encode(self, s: str, add_bos: bool = True, **kwargs) -> list[int]:
        return self.model.encode(s, add_special_tokens=add_bos)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.model.decode(ids, skip_special_tokens=skip_special_tokens)

    def indexes_containing_token(self, token: str) -> list[int]:
        """Ids whose text contains ``token`` (how 0.18 turns a stop word into stop ids)."""
        ids = [i for i in range(len(self.model)) if token in self.model.decode([i])]
        if not ids:
            encoded = self.encode(token, add_bos=False)
            ids = encoded if len(encoded) == 1 else []
        return ids

    def detokenize_incrementally(self, ids: list[int], state: list[int], skip_special_tokens: bool = True) -> str:
        """The text new since the last call, never ending inside a character (state: [prefix, read])."""
        prefix, read = state
        prefix_text = self.decode(ids[prefix:read], skip_special_tokens)
        new_text = self.decode(ids[prefix:], skip_special_tokens)
        if len(new_text) > len(prefix_text) and not new_text.endswith('\ufffd'):
            state[0], state[1] = read, len(ids)
            return new_text[len(prefix_text):]
        return ''


@dataclass
class _Request:
    session_id: int
    max_new: int
    stop_ids: set[int]
    vocab: list[int]
    rng: random.Random
    stream: bool
    emit: callable
    stop_after: int | None
    tokens: list[int] = field(default_factory=list)
    cancel: bool = False
    on_ack: list = field(default_factory=list)

    def next_token(self) -> int:
        if self.stop_after is not None and len(self.tokens) == self.stop_after and self.stop_ids:
            return min(self.stop_ids)
        return self.rng.choice(self.vocab)


class StandinEngine:
    """One decoding thread for all requests of a pipeline; ``backend`` is 'turbomind' or 'pytorch'."""

    def __init__(self, backend: str, step_s: float, vocab: list[int], stop_after: int | None):
        self.backend = backend
        self.step_s = step_s
        self.vocab = vocab
        self.stop_after = stop_after
        self.steps = 0
        self.finished: dict[int, str] = {}
        self._tokens: dict[int, int] = defaultdict(int)
        self._running: dict[int, _Request] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name='lmdeploy-standin-engine', daemon=True)
        self._thread.start()

    # --- what tests poll --------------------------------------------------------------------------
    def tokens(self, session_id: int) -> int:
        """Tokens decoded so far for this session (all its requests)."""
        with self._cond:
            return self._tokens.get(session_id, 0)

    def total_tokens(self) -> int:
        with self._cond:
            return sum(self._tokens.values())

    def active_sessions(self) -> set[int]:
        """Sessions whose request is being decoded now."""
        with self._cond:
            return set(self._running)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # --- what the handles call --------------------------------------------------------------------
    def create_instance(self) -> StandinHandle:
        return StandinHandle(self)

    def add(self, req: _Request) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError('engine is closed')
            if req.session_id in self._running:
                raise RuntimeError(f'session {req.session_id} is already running')
            self._running[req.session_id] = req
            self._cond.notify_all()

    def cancel(self, session_id: int, on_ack=None) -> None:
        """Mark the session's request cancelled; ``on_ack`` runs once the engine has stopped it."""
        with self._cond:
            req = self._running.get(session_id)
            if req is None:  # already finished (or never started): nothing to stop
                if on_ack is not None:
                    on_ack()
                return
            req.cancel = True
            if on_ack is not None:
                req.on_ack.append(on_ack)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._running.clear()
            self._cond.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    # --- the engine thread ------------------------------------------------------------------------
    def _finish(self, req: _Request, status: ResponseType, last: list[int]) -> None:
        del self._running[req.session_id]
        self.finished[req.session_id] = 'cancel' if status == ResponseType.CANCEL else 'finish'
        req.emit(EngineOutput(status, last if req.stream else list(req.tokens)))
        for ack in req.on_ack:
            ack()
        self._cond.notify_all()

    def _run(self) -> None:
        next_step = time.monotonic()
        with self._cond:
            while True:
                if self._closed:
                    return
                for req in [r for r in self._running.values() if r.cancel]:  # cancels are served at once
                    self._finish(req, ResponseType.CANCEL, [])
                now = time.monotonic()
                if not self._running:
                    self._cond.wait()
                    next_step = time.monotonic() + self.step_s
                    continue
                if now < next_step:
                    self._cond.wait(next_step - now)
                    continue
                self.steps += 1
                for req in list(self._running.values()):
                    token = req.next_token()
                    req.tokens.append(token)
                    self._tokens[req.session_id] += 1
                    if token in req.stop_ids or len(req.tokens) >= req.max_new:
                        self._finish(req, ResponseType.FINISH, [token])
                    elif req.stream:
                        req.emit(EngineOutput(ResponseType.SUCCESS, [token]))
                next_step = time.monotonic() + self.step_s


class StandinHandle:
    """One engine instance (the pool holds ``max_batch_size`` of them), like TurboMindInstance."""

    def __init__(self, engine: StandinEngine):
        self.engine = engine

    async def async_cancel(self, session_id: int = None):
        """TurboMind: ``model_inst.cancel()`` only signals the engine and returns; PyTorch: sends
        STOP_SESSION and awaits the engine loop's answer, i.e. returns once the request stopped."""
        if self.engine.backend == 'turbomind':
            self.engine.cancel(session_id)
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def ack():
            try:
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
            except RuntimeError:  # loop closed
                pass

        self.engine.cancel(session_id, on_ack=ack)
        await done

    async def async_end(self, session_id):
        return

    async def async_stream_infer(self, session_id, input_ids, multimodal=None, gen_config: GenerationConfig = None,
                                 stream_output=False, *, session_len: int, **kwargs):
        seed = gen_config.random_seed
        if self.engine.backend == 'turbomind':
            # _get_generation_config: ``c.random_seed = cfg.random_seed`` sets a pybind11 uint64_t
            # field; a value outside [0, 2**64) fails the cast with this TypeError.
            if seed is not None and not 0 <= seed < UINT64_LIMIT:
                raise TypeError(
                    '(): incompatible function arguments. The following argument types are supported:\n'
                    '    1. (self: _turbomind.GenerationConfig, arg0: int) -> None\n\n'
                    f'Invoked with: <_turbomind.GenerationConfig object>, {seed}')
        elif seed is not None:
            seed &= 0xffffffff  # PyTorch engine: ``param.random_seed & 0xffffffff``
        if not gen_config.do_sample or gen_config.top_k == 1:
            seed = 0  # greedy: the prompt alone decides the tokens
        rng = random.Random(f'{seed}:{zlib.crc32(repr(list(input_ids)).encode())}')

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def emit(out):
            try:
                loop.call_soon_threadsafe(queue.put_nowait, out)
            except RuntimeError:  # the pipeline's loop is closed
                pass

        stop_ids = set() if gen_config.ignore_eos else set(gen_config.stop_token_ids or [])
        req = _Request(session_id=session_id, max_new=min(gen_config.max_new_tokens, session_len - len(input_ids)),
                       stop_ids=stop_ids, vocab=self.engine.vocab, rng=rng, stream=bool(stream_output), emit=emit,
                       stop_after=self.engine.stop_after)
        self.engine.add(req)
        try:
            while True:
                out = await queue.get()
                yield out
                if out.status in (ResponseType.FINISH, ResponseType.CANCEL):
                    break
        except (GeneratorExit, asyncio.CancelledError):
            self.engine.cancel(session_id)
            raise
