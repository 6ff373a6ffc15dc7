"""Speech synthesis with ChatTTS 0.2.5: batched `synthesize` and chunked `stream`.

Text is split into sentences here (not by ChatTTS, whose own splitting also clones a speaker from
the first sentence's audio and concatenates the whole batch into one array). Each sentence is one
GPT sequence capped at `max_new_token` codes (~512 samples, 21 ms, per code), so random or bad
weights, which rarely emit end-of-audio, cannot run away.

Every ChatTTS call gets an interrupt flag of its own (`_CallFlag`), which its GPT polls once per
generated code: that counts the codes (`progress`) and stops the call within one code once every
request it serves has gone (a streamed request's `cancel()`, a batched one's `Cancel`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mmserve.devices import resolve_device
from mmserve.errors import ConfigError, InvalidInput
from mmserve.lazy import lazy
from mmserve.model_configs import kv_bytes_per_token
from mmserve.protocol.tts import SpeechRequest
from mmserve.runners.family import Family
from mmserve.runners.progress import Cancel, Progress, all_gone
from mmserve.sizing.estimates import GB, ModelEstimate, model_folder, read_json, sizes, unknown, weight_bytes

torch = lazy("torch")  # imported on first use: declaring the family costs no torch

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
# Written next to asset/ by mmserve.tiny.chattts: ChatTTS Config + sha256 map for non-default sizes.
SIDECAR = "mmserve_chattts.json"
_SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes a signed 64-bit value here
# Labels for speaker seeds sampled from ChatTTS's speaker statistics. The seed -> timbre mapping
# depends on the weights: audition seeds on the real model and override `voices` in config.
DEFAULT_VOICES = {"female_1": 2, "female_2": 4, "male_1": 1, "male_2": 3}
# OpenAI's voice names onto those labels, by the pitch OpenAI's own voices have (used while `voices`
# holds these labels; otherwise every OpenAI name is the default voice unless `openai_voices` says).
DEFAULT_OPENAI_VOICES = {
    "alloy": "female_1", "ash": "male_1", "ballad": "male_2", "cedar": "male_2", "coral": "female_2",
    "echo": "male_1", "fable": "male_2", "marin": "female_2", "nova": "female_1", "onyx": "male_2",
    "sage": "female_2", "shimmer": "female_1", "verse": "male_1"}
# ChatTTS's prosody tokens for its refine-text prompt, with the levels its tokenizer has.
PROSODY_LEVELS = {"oral": 10, "laugh": 3, "break": 8}
_PROSODY = re.compile(r"\[(oral|laugh|break)_(\d+)\]")

_SENTENCE_SPLIT = re.compile(r"\n+|(?<=[。！？；])|(?<=[.!?;])\s+")
_CLAUSE_SPLIT = re.compile(r"(?<=[，、：,:])")
_SPEAKABLE = re.compile(r"\w")


class TtsArgs(BaseModel):
    """How to load and run ChatTTS."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["chattts"] = "chattts"

    model: str = Field(description="local ChatTTS folder holding asset/ (loaded with source='custom')")
    device: str = Field("auto", description="auto | cpu | cuda[:n]")
    max_new_token: int = Field(2048, ge=1, description="most audio codes per sentence (~21 ms each)")
    min_new_token: int = Field(
        0, ge=0, description="fewest audio codes per sentence: ChatTTS masks end-of-audio until then. 0 with "
        "real weights, which end a sentence where its speech ends; random test weights may end at once")
    max_text_chars: int = Field(500, ge=1, description="longest input text accepted")
    max_sentence_chars: int = Field(120, ge=8, description="longer sentences are split at commas, then hard-wrapped")
    max_batch_sentences: int = Field(8, ge=1, description="most sentences in one GPT batch")
    stream_batch: int = Field(24, ge=1, description="audio codes generated between streamed chunks (24 ~ 0.5 s)")
    stream_skip_batches: int = Field(
        0, ge=0, description="streamed batches held back before the first chunk leaves (ChatTTS's "
        "pass_first_n_batches, 2 in ChatTTS itself, i.e. 3 x stream_batch codes of waiting); 0: the first chunk "
        "leaves after stream_batch codes, which is what time to first audio wants")
    voices: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_VOICES), description="voice name -> speaker seed"
    )
    default_voice: str | None = Field(
        "female_1", description="voice when a request names none; None = no speaker prompt"
    )
    openai_voices: dict[str, str] | None = Field(
        None, description="OpenAI voice name -> one of `voices`; None: DEFAULT_OPENAI_VOICES while `voices` has "
        "its labels, else every OpenAI name speaks as default_voice")
    compile: bool = Field(False, description="torch.compile the GPT (CUDA only; ChatTTS ignores it on CPU)")

    @model_validator(mode="after")
    def _min_below_max(self):
        if self.min_new_token > self.max_new_token:
            raise ValueError(f"min_new_token {self.min_new_token} is above max_new_token {self.max_new_token}")
        return self

    @model_validator(mode="after")
    def _openai_voices_known(self):
        unknown = {k: v for k, v in (self.openai_voices or {}).items() if v not in self.voices}
        if unknown:
            raise ValueError(f"openai_voices maps onto voices that are not in voices {sorted(self.voices)}: {unknown}")
        return self

    def openai_voice_map(self) -> dict[str, str]:
        if self.openai_voices is not None:
            return self.openai_voices
        if set(DEFAULT_OPENAI_VOICES.values()) <= set(self.voices):
            return dict(DEFAULT_OPENAI_VOICES)
        return {name: self.default_voice for name in DEFAULT_OPENAI_VOICES} if self.default_voice else {}

    @model_validator(mode="after")
    def _default_voice_known(self):
        if self.default_voice is not None and self.default_voice not in self.voices:
            raise ValueError(f"default_voice {self.default_voice!r} is not one of voices {sorted(self.voices)}")
        return self


def prosody_prompt(instructions: str | None) -> str:
    """ChatTTS's refine-text prompt from OpenAI's `instructions`: the `[oral_N]`, `[laugh_N]` and `[break_N]`
    tokens it holds, in order ("" when none: free-text instructions cannot steer ChatTTS and are ignored)."""
    tokens = []
    for kind, level in _PROSODY.findall(instructions or ""):
        if int(level) >= PROSODY_LEVELS[kind]:
            raise InvalidInput(f"[{kind}_{level}] is out of range; ChatTTS has [{kind}_0] to "
                               f"[{kind}_{PROSODY_LEVELS[kind] - 1}]", field="instructions")
        tokens.append(f"[{kind}_{level}]")
    return "".join(tokens)


def split_sentences(text: str, max_chars: int) -> list[str]:
    """Sentences at 。！？；.!?; and newlines; long ones split at commas, then every max_chars."""
    pieces = []
    for sentence in _SENTENCE_SPLIT.split(text):
        sentence = sentence.strip()
        if not _SPEAKABLE.search(sentence):
            continue
        current = ""
        for clause in _CLAUSE_SPLIT.split(sentence):
            if current and len(current) + len(clause) > max_chars:
                pieces.append(current.strip())
                current = ""
            current += clause
            while len(current) > max_chars:
                pieces.append(current[:max_chars].strip())
                current = current[max_chars:]
        if current.strip():
            pieces.append(current.strip())
    return pieces


def _chat_class():
    import ChatTTS

    class Chat(ChatTTS.Chat):
        """Decodes each batch item alone, then zero-pads the waveforms to the longest.

        ChatTTS pads shorter items' GPT hidden states with zeros and decodes the batch at once, so
        their audio gets a noisy tail and edges that depend on the batch. Exact zeros in the
        waveform are what its own stripping (infer) and trimming (stream) remove.
        """

        def _decode_to_wavs(self, result_list, use_decoder):
            wavs = [
                super(Chat, self)._decode_to_wavs([r], use_decoder)[0] if r.size(0) else np.zeros(0, np.float32)
                for r in result_list
            ]
            out = np.zeros((len(wavs), max((len(w) for w in wavs), default=0)), dtype=np.float32)
            for i, w in enumerate(wavs):
                out[i, : len(w)] = w
            return out

    return Chat


def _config_from_dict(cls, data: dict):
    """Rebuild a (nested) ChatTTS config dataclass from its asdict() form, as new instances."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if dataclasses.is_dataclass(f.type) and isinstance(value, dict):
            value = _config_from_dict(f.type, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


class TtsRunner:
    """Loads ChatTTS once; returns float32 mono audio at `sample_rate` (24 kHz)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, args: TtsArgs):
        from ChatTTS.model import Speaker

        self.args = args
        self.device = resolve_device(args.device)
        folder = Path(args.model)
        if not (folder / "asset").is_dir():
            raise ConfigError(f"ChatTTS folder {folder} has no asset/ directory", field="model")
        self.chat = _chat_class()(logger=log)
        sidecar = folder / SIDECAR
        if sidecar.exists():
            from ChatTTS.config import Config

            data = json.loads(sidecar.read_text(encoding="utf-8"))
            self.chat.config = _config_from_dict(Config, data["config"])
            self.chat.sha256_map = data["sha256"]
        ok = self.chat.load(
            source="custom", custom_path=str(folder), device=torch.device(self.device), compile=args.compile
        )
        if not ok:
            raise ConfigError(
                f"ChatTTS could not load {folder}: missing asset or sha256 mismatch (see the log)",
                field="model",
            )
        # Seeds are sampled on CPU so a named voice is the same timbre on every device.
        self._speaker = Speaker(self.chat.config.gpt.hidden_size, self.chat.config.spk_stat)
        self._voices = {name: self._seed_speaker(seed) for name, seed in args.voices.items()}
        self._openai_voices = args.openai_voice_map()
        # ChatTTS keeps per-call state on the Chat (interrupt flag, seeded sampling generator):
        # one infer step at a time. Generation state itself lives in each call's generator.
        self._lock = threading.Lock()
        self.progress = Progress()  # GPT codes generated (refine-text tokens too, when refining)

    def _warm_normalizer(self) -> None:
        """Compile ChatTTS's numba text helpers now (seconds) instead of on the first request."""
        chat_log = self.chat.logger
        level = chat_log.level
        chat_log.setLevel(logging.ERROR)  # the sample has an "invalid" character on purpose
        try:
            self.chat.normalizer("[uv_break]你好！hello")
        finally:
            chat_log.setLevel(level)

    def warmup(self) -> None:
        """The text normalizer, then one short sentence through GPT and decoder: the first call
        of each compiles numba helpers and builds caches and kernels (seconds)."""
        self._warm_normalizer()
        self.synthesize([SpeechRequest(text="你好。", seed=0)])

    def _seed_speaker(self, seed: int) -> str:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._speaker.sample_random()

    def validate(self, request: SpeechRequest) -> None:
        """Raise InvalidInput for a request that cannot be served (lets callers reject it early)."""
        self._prepare(request)

    def _prepare(self, request: SpeechRequest) -> tuple[list[str], tuple]:
        """Sentences to speak and the inference key (speaker, speed, seed, refine) of a valid request."""
        text = request.text
        if not text or not text.strip():
            raise InvalidInput("input text is empty", field="input")
        if len(text) > self.args.max_text_chars:
            limit = self.args.max_text_chars
            raise InvalidInput(f"input is {len(text)} characters; the limit is {limit}", field="input")
        sentences = split_sentences(text, self.args.max_sentence_chars)
        if not sentences:
            raise InvalidInput("input has no speakable text", field="input")
        if not isinstance(request.speed, int) or not 0 <= request.speed <= 9:
            raise InvalidInput("speed must be an integer from 0 to 9", field="speed")
        for name in ("seed", "speaker_seed"):
            value = getattr(request, name)
            if value is not None and not 0 <= value < _SEED_LIMIT:
                raise InvalidInput(f"{name} must be in [0, 2**63)", field=name)
        chosen = [n for n in ("voice", "speaker_seed", "speaker_embedding") if getattr(request, n) is not None]
        if len(chosen) > 1:
            raise InvalidInput(
                f"give at most one of voice, speaker_seed, speaker_embedding (got {chosen})", field="voice"
            )
        prosody = prosody_prompt(request.instructions)
        skip_refine = request.skip_refine_text and not prosody  # the prompt steers the refine pass
        return sentences, (self._speaker_for(request), request.speed, request.seed, skip_refine, prosody)

    def _speaker_for(self, request: SpeechRequest) -> str | None:
        if request.speaker_embedding is not None:
            try:
                size = type(self._speaker)._decode(request.speaker_embedding).size
            except Exception:
                raise InvalidInput(
                    "speaker_embedding is not a ChatTTS speaker string", field="speaker_embedding"
                ) from None
            if size != self.chat.config.gpt.hidden_size:
                raise InvalidInput(
                    f"speaker_embedding has {size} values; this model needs {self.chat.config.gpt.hidden_size}",
                    field="speaker_embedding",
                )
            return request.speaker_embedding
        if request.speaker_seed is not None:
            return self._seed_speaker(request.speaker_seed)
        voice = request.voice if request.voice is not None else self.args.default_voice
        if voice is None:
            return None
        voice = voice if voice in self._voices else self._openai_voices.get(voice, voice)
        if voice not in self._voices:
            known = sorted(self._voices) + sorted(set(self._openai_voices) - set(self._voices))
            raise InvalidInput(f"unknown voice {voice!r}; known: {known}", field="voice")
        return self._voices[voice]

    def _infer(self, sentences: list[str], key: tuple, stream: bool, flag: _CallFlag):
        """ChatTTS's infer with `flag` as its interrupt flag (the caller holds the lock; a stream's
        GPT takes the flag at its first step, so set it again before each `next`)."""
        spk_emb, speed, seed, skip_refine, prosody = key
        chat = self.chat
        chat.context = flag
        return chat.infer(
            list(sentences),  # ChatTTS rewrites the list in place
            stream=stream,
            skip_refine_text=skip_refine,
            split_text=False,
            params_refine_text=chat.RefineTextParams(
                prompt=prosody, max_new_token=min(384, self.args.max_new_token), manual_seed=seed, show_tqdm=False
            ),
            params_infer_code=chat.InferCodeParams(
                prompt=f"[speed_{speed}]",
                spk_emb=spk_emb,
                max_new_token=self.args.max_new_token,
                min_new_token=self.args.min_new_token,
                manual_seed=seed,
                show_tqdm=False,
                stream_batch=self.args.stream_batch,
                pass_first_n_batches=self.args.stream_skip_batches,
            ),
        )

    def synthesize(self, requests: list[SpeechRequest], cancels: list[Cancel | None] | None = None) -> list[np.ndarray]:
        """One array per request; unseeded sentences of requests with equal settings share GPT batches.

        `cancels[i]` set (request i's caller has gone): a GPT batch serving only gone requests stops
        within one code or is not started, and their arrays may be cut short or empty.
        """
        checked = [self._prepare(r) for r in requests]
        cancels = cancels or [None] * len(requests)
        groups: dict[tuple, list[tuple[int, int]]] = {}  # key -> [(request index, sentence index)]
        for i, (sentences, key) in enumerate(checked):
            groups.setdefault(key, []).extend((i, j) for j in range(len(sentences)))
        audio: list[list[np.ndarray | None]] = [[None] * len(s) for s, _ in checked]
        for key, items in groups.items():
            # A seed fixes the random numbers per step, but each batch row draws different ones:
            # seeded sentences run alone so the same seed gives the same audio in any batch.
            step = self.args.max_batch_sentences if key[2] is None else 1
            for start in range(0, len(items), step):
                batch = items[start : start + step]
                flag = _CallFlag(self.progress, [cancels[i] for i, _ in batch])
                if flag.all_gone():
                    wavs = [np.zeros(0, np.float32)] * len(batch)
                else:
                    with self._lock:
                        wavs = self._infer([checked[i][0][j] for i, j in batch], key, stream=False, flag=flag)
                for (i, j), wav in zip(batch, wavs, strict=True):
                    audio[i][j] = np.asarray(wav, dtype=np.float32)
        return [np.concatenate(parts) for parts in audio]

    def stream(self, request: SpeechRequest) -> SpeechStream:
        """Float32 chunks as they are decoded: one every `stream_batch` codes within each sentence.

        Validates at call time (bad input raises here, before any chunk), then returns the iterator.
        """
        sentences, key = self._prepare(request)
        return SpeechStream(self, sentences, key)

    def _stream(self, sentences: list[str], key: tuple, cancel: Cancel) -> Iterator[np.ndarray]:
        # The lock is held per chunk, not per request, so concurrent streams interleave; closing
        # this iterator closes ChatTTS's generator, and `cancel` stops its GPT within one code.
        flag = _CallFlag(self.progress, [cancel])
        for sentence in sentences:
            if flag.all_gone():
                return
            with self._lock:
                chunks = self._infer([sentence], key, stream=True, flag=flag)
            try:
                while True:
                    with self._lock:
                        self.chat.context = flag
                        chunk = next(chunks, None)
                    if chunk is None:
                        break
                    if chunk.size:
                        yield np.asarray(chunk[0], dtype=np.float32)
            finally:
                chunks.close()


class SpeechStream(Iterator[np.ndarray]):
    """One request's audio chunks; `cancel()`, from any thread, stops ChatTTS within one code (the
    deployment's stream driver calls it when the client has gone)."""

    def __init__(self, runner: TtsRunner, sentences: list[str], key: tuple):
        self._cancel = Cancel(runner.progress)
        self._chunks = runner._stream(sentences, key, self._cancel)

    def __next__(self) -> np.ndarray:
        return next(self._chunks)

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        """Release ChatTTS's generator (from the iterating thread; not a cancel: also after the end)."""
        self._chunks.close()


class _CallFlag:
    """ChatTTS's interrupt flag (`GPT.Context`) for one call: its GPT polls `get()` after each code
    (and once more after a loop that did not finish: an interrupted or capped one)."""

    def __init__(self, progress: Progress, cancels: list[Cancel | None]):
        self._progress, self._cancels = progress, cancels
        self._stopped = False

    def set(self, value: bool) -> None:
        """ChatTTS clears the flag when a call starts; this one belongs to a single call already."""

    def get(self) -> bool:
        if self._stopped:  # asked again after the loop it stopped: no code was generated
            return True
        self._progress.step()
        self._stopped = self.all_gone()
        return self._stopped

    def all_gone(self) -> bool:
        return all_gone(self._cancels)


def estimate(args, image_side: int) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model, args.family.shipped)
    parts = sizes(runner.model, args.family.shipped)
    if parts is None:
        return unknown(args, "no config to size it")
    gpt = read_json(folder / "asset" / "gpt", "config.json")
    per_token = kv_bytes_per_token(gpt, 4)
    tokens = runner.max_new_token + runner.max_sentence_chars
    sentences = runner.max_batch_sentences
    return ModelEstimate(
        "tts", args.name, runner.model, weight_bytes(parts, "float32") / GB,
        per_token * tokens * sentences / GB,
        f"fp32 (ChatTTS); GPT KV {per_token / 1e3:.0f} kB/token x {tokens} tokens x {sentences} sentences "
        "per batch (max_batch_sentences)")


FAMILY = Family("chattts", "tts", TtsArgs, TtsRunner, estimate=estimate, tiny={"chattts": "mmserve.tiny.chattts"},
                shipped={"2Noise/ChatTTS": "chattts"})
