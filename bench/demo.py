"""Send one spoken WAV to the speech -> text -> image flow and show what comes back; then the English
WAV to the same flow through Whisper tiny.en (real weights, `asr_model=whisper-tiny`, rewrite off),
whose transcript is real.

    python -m bench.demo [--url http://127.0.0.1:8000] [--audio tests/data/speech_zh.wav]
        [--english-audio tests/data/speech_en.wav] [--whisper-model whisper-tiny]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

import httpx

from bench.report import ROOT
from bench.wait import wait_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--audio", type=Path, default=ROOT / "tests" / "data" / "speech_zh.wav")
    parser.add_argument("--wait", type=float, default=600, help="seconds to wait for the stack")
    parser.add_argument("--save", type=Path, default=Path("demo-output.png"))
    parser.add_argument("--english-audio", type=Path, default=ROOT / "tests" / "data" / "speech_en.wav")
    parser.add_argument("--whisper-model", default="whisper-tiny", help="'' skips the Whisper request")
    args = parser.parse_args()

    try:
        wait_ready(args.url, args.wait)  # every model loaded and warm
    except TimeoutError:
        sys.exit(f"the stack at {args.url} did not become ready within {args.wait:.0f} s")
    files = {"file": (args.audio.name, args.audio.read_bytes(), "audio/wav")}
    resp = httpx.post(args.url + "/v1/flows/speech-to-image", files=files, data={"seed": "0"}, timeout=300)
    body = resp.json()
    if resp.status_code != 200:
        sys.exit(f"HTTP {resp.status_code}: {json.dumps(body, ensure_ascii=False)}")
    png = base64.b64decode(body["images"][0]["b64_json"])
    args.save.write_bytes(png)
    summary = {k: body[k] for k in ("transcript", "prompt", "audio_duration_s", "timings")}
    summary["image"] = f"{len(png)} bytes of PNG saved to {args.save}"
    print(json.dumps(summary, ensure_ascii=False, indent=2))
    if args.whisper_model:
        english = {"file": (args.english_audio.name, args.english_audio.read_bytes(), "audio/wav")}
        form = {"seed": "0", "asr_model": args.whisper_model, "rewrite": "false"}
        resp = httpx.post(args.url + "/v1/flows/speech-to-image", files=english, data=form, timeout=300)
        body = resp.json()
        if resp.status_code != 200:
            sys.exit(f"HTTP {resp.status_code}: {json.dumps(body, ensure_ascii=False)}")
        print(f"{args.whisper_model} transcript of {args.english_audio.name} (real weights): "
              f"{json.dumps(body['transcript'], ensure_ascii=False)} (asr {body['timings']['asr_ms']:.0f} ms)")


if __name__ == "__main__":
    main()
