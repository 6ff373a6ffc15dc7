"""Turn detection inside the gateway (gateway/realtime/vad.py): Silero VAD's real ONNX weights on
onnxruntime, without torch. Real weights, so these tests can tell speech from noise (the tiny
FSMN-VAD, a level gate, cannot: it starts a turn on the noise below)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gateway.realtime.vad import RATE, SPEECH_PAD_MS, WINDOW, TurnDetector, silero_model
from mmserve.media import decode_audio
from tests.helpers import SPEECH_EN, SPEECH_ZH

SILENCE = np.zeros(RATE, np.float32)


def speech(path=SPEECH_EN) -> np.ndarray:
    return decode_audio(path.read_bytes(), target_rate=RATE).samples


def detect(samples: np.ndarray, chunk: int = 640, **settings) -> list[tuple[str, int]]:
    detector = TurnDetector(silero_model(), **settings)
    events = []
    for i in range(0, len(samples), chunk):  # 40 ms pieces, as a client streams them
        events += detector.feed(samples[i:i + chunk])
    return events


@pytest.mark.parametrize("recording", [SPEECH_EN, SPEECH_ZH], ids=["en", "zh"])
def test_speech_is_one_turn_and_noise_of_the_same_level_is_none(recording):
    voice = speech(recording)
    noise = np.random.default_rng(0).normal(0, np.sqrt(np.mean(voice ** 2)), len(voice)).astype(np.float32)
    heard = detect(np.concatenate([SILENCE, voice, SILENCE]), prefix_padding_ms=0, silence_duration_ms=500)
    assert [kind for kind, _ in heard] == ["start", "stop"], heard
    (_, start), (_, end) = heard
    onset = len(SILENCE) + np.flatnonzero(np.abs(voice) > 0.01)[0]
    offset = len(SILENCE) + np.flatnonzero(np.abs(voice) > 0.01)[-1]
    assert onset - WINDOW <= start <= onset + 0.3 * RATE, (start, onset)
    assert offset - 0.3 * RATE <= end <= offset + 0.2 * RATE, (end, offset)  # the model's state lags a window or so
    assert detect(np.concatenate([SILENCE, noise, SILENCE])) == []


def test_the_turn_ends_once_the_silence_has_lasted_and_the_start_keeps_its_padding():
    voice = speech()
    detector = TurnDetector(silero_model(), prefix_padding_ms=300, silence_duration_ms=700)
    events, ended_at = [], None
    for i in range(0, len(SILENCE) + len(voice) + 2 * RATE, WINDOW):
        audio = np.concatenate([SILENCE, voice, SILENCE, SILENCE])[i:i + WINDOW]
        for event in detector.feed(audio):
            events.append(event)
            ended_at = detector.heard if event[0] == "stop" else ended_at
    (_, start), (_, end) = events
    unpadded = detect(np.concatenate([SILENCE, voice, SILENCE]), prefix_padding_ms=0)[0][1]
    assert start == unpadded - 300 * RATE // 1000
    silence_from = end - SPEECH_PAD_MS * RATE // 1000
    assert 700 * RATE // 1000 <= ended_at - silence_from < 700 * RATE // 1000 + WINDOW


def test_events_do_not_depend_on_how_the_audio_is_cut():
    audio = np.concatenate([SILENCE, speech(), SILENCE])
    assert detect(audio, chunk=len(audio)) == detect(audio, chunk=123) == detect(audio, chunk=640)


def test_the_gateway_runs_silero_without_torch():
    code = ("import sys, numpy as np; from gateway.realtime.vad import TurnDetector, silero_model; "
            "TurnDetector(silero_model()).feed(np.zeros(16000, np.float32)); "
            "import gateway.realtime; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
