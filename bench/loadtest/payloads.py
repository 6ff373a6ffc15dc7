"""Real request bodies: spoken WAVs of several lengths, Chinese and English prompts, PNG images.

The two recordings in tests/data are espeak-ng speech (Chinese 4.5 s, English 2.7 s); the longer
clips are made by joining them with short pauses and cutting to an exact length, so a real-time
factor can be computed against a known duration.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

DATA = Path(__file__).parents[2] / "tests" / "data"
SAMPLE_RATE = 16000
PAUSE_S = 0.3

PROMPTS_ZH = [
    "请画一只坐在海边的小猫",
    "夕阳下的雪山和湖泊，油画风格",
    "一座未来城市的夜景，霓虹灯闪烁",
    "用一句话介绍一下长城的历史",
]
PROMPTS_EN = [
    "Draw a small cat sitting by the sea at sunset.",
    "A watercolor painting of a lighthouse in a storm.",
    "Explain in two sentences why the sky is blue.",
    "A red bicycle leaning against a brick wall, photo.",
]
QUESTIONS = ["What is in this picture?", "图片里有什么颜色？", "Describe the shapes you see."]
SPEECH_TEXT = [
    "你好，欢迎使用多模态服务。今天的天气很好，我们去公园散步吧。",
    "Hello and welcome. This sentence is spoken by the speech synthesis model.",
]


@dataclass(frozen=True)
class Clip:
    name: str
    wav: bytes
    seconds: float


def _read_mono(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if rate != SAMPLE_RATE:  # linear interpolation is plenty for load-test payloads
        idx = np.linspace(0, len(mono) - 1, int(round(len(mono) * SAMPLE_RATE / rate)))
        mono = np.interp(idx, np.arange(len(mono)), mono).astype(np.float32)
    return mono


def _wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _joined(parts: list[np.ndarray], seconds: float) -> np.ndarray:
    """Recordings joined with pauses, repeated as needed, cut to exactly `seconds`."""
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
    target = int(seconds * SAMPLE_RATE)
    out: list[np.ndarray] = []
    total, i = 0, 0
    while total < target:
        piece = np.concatenate([parts[i % len(parts)], pause])
        out.append(piece)
        total += len(piece)
        i += 1
    return np.concatenate(out)[:target]


def speech_clips(names: list[str] | None = None) -> list[Clip]:
    """Clips by name: `zh`, `en` (the recordings) and `<N>s` (joined to N seconds, e.g. `10s`)."""
    zh, en = _read_mono(DATA / "speech_zh.wav"), _read_mono(DATA / "speech_en.wav")
    clips: list[Clip] = []
    for name in names or ["zh", "en", "10s"]:
        if name in ("zh", "en"):
            samples = zh if name == "zh" else en
        elif name.endswith("s") and name[:-1].replace(".", "", 1).isdigit():
            samples = _joined([zh, en], float(name[:-1]))
        else:
            raise ValueError(f"unknown audio clip {name!r}: use zh, en or <seconds>s such as 10s")
        clips.append(Clip(name=name, wav=_wav(samples), seconds=len(samples) / SAMPLE_RATE))
    return clips


def png_image(width: int, height: int, seed: int) -> bytes:
    """A PNG with a gradient and a few shapes: real image bytes a VLM processor accepts."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     np.full_like(x, int(rng.integers(0, 256)))], axis=-1).astype(np.uint8)
    image = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
        box = [x0, y0, x0 + width // 3, y0 + height // 3]
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=color)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_images(sizes: tuple[int, ...] = (64, 256, 512)) -> list[bytes]:
    return [png_image(side, side, seed) for seed, side in enumerate(sizes)]


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def wav_seconds(data: bytes) -> float:
    """Duration of a WAV (or other libsndfile container) body; 0.0 if it does not decode."""
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:
        return 0.0
    return info.frames / float(info.samplerate)


class Payloads:
    """Every body a route sends; each route cycles through its list, so runs are repeatable."""

    def __init__(self, audio: list[str] | None = None):
        self.clips = speech_clips(audio)
        self.prompts = [p for pair in zip(PROMPTS_ZH, PROMPTS_EN) for p in pair]
        self.images = png_images()
        self.image_urls = [data_url(png) for png in self.images]
        self.questions = QUESTIONS
        self.speech_text = SPEECH_TEXT
