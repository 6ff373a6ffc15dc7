"""Time to first audio of a spoken reply: voice chat (HTTP SSE) and /v1/realtime, side by side in one run.

    python -m bench voice [--levels 1,4,8] [--duration 60] [--silence-ms 300] [--turn-detectors silero,asr]
                          [--transcription-levels 16] [--idle-sessions 0,16] [--out docs/bench/voice.json]

Serves configs/local.yaml's voice-chat models (its default ASR, LLM and TTS, with their local
settings) and gateway on this machine, then runs the load tool (`python -m bench loadtest`)
closed loop at each level of concurrent sessions, first on `voice-chat`, then on `realtime`:

- voice chat: the whole recording is uploaded at once (tests/data/speech_en.wav); time to first
  audio runs from sending the request to the first `audio` event. The `done` event's server timings
  (asr_ms, llm_first_token_ms, first_audio_ms) say where the time goes.
- realtime: each session streams the same recording (silence trimmed, 24 kHz PCM16) at real-time
  pace in `--chunk-ms` pieces, then silence, with server VAD `silence_duration_ms = --silence-ms`;
  time to first audio runs from the moment the last speech sample was sent to the first
  `response.output_audio.delta`, so it includes the silence the server waits for. Run once per
  `--turn-detectors` entry (`gateway.realtime.turn_detector`: Silero in the gateway, or the ASR
  model's FSMN-VAD through Serve), the gateway redeployed in between, the models kept.
- transcription: the same turn in a transcription session (`?intent=transcription`, Silero), at
  `--transcription-levels`; the turn ends at its transcript. With partial transcripts on, each
  delta's delay runs from sending the append holding the last sample it covers to receiving it.
- `--partials on,off`: the Silero runs once with the config's `partials_model` (two-pass: streaming
  partials, the offline model's final text; named `silero+partials`) and once without.
- idle: `--idle-sessions` sessions stream silence at real time for `--idle-seconds`, per turn
  detector: the CPU listening costs (0 sessions: the stack's own background).

Writes p50/p95 per level, the goal (p50 <= 600 ms with one session), the load average at start and
end, the settings and the exact command. Per level, `cpu_cores` says where the two cores went: CPU
seconds per part of the stack (each deployment, Serve's proxy, the load tool) over wall seconds.
`vad_cpu_ms_per_audio_s` times the streaming VAD alone (no Ray) at the two chunk sizes a realtime
session uses, `gateway.realtime.vad_chunk_ms` in speech and `vad_listen_chunk_ms` otherwise. `--serve-only` starts the stack and waits (for trying the
tool by hand).

    python -m bench voice gpu [--tiny] [--work DIR] [--out DIR]

The GPU check's voice case (bench/gpu/check.sh), without Ray: one voice-chat turn through the
runners alone, as the flow chains them: ASR on the recording, the LLM streamed until its first
speakable clause, ChatTTS streamed to its first chunk; on the real-size random-weight models
bench/gpu/bench.py builds, with ASR on CPU as serve_config.yaml places it. Writes gpu-voice.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import psutil  # noqa: E402

from bench import report as rw  # noqa: E402
from bench.report import BENCH_DIR, ROOT  # noqa: E402
from bench.stack import local_stack  # noqa: E402
from bench.wait import wait_ready  # noqa: E402

OUT = BENCH_DIR / "voice.json"
GOAL_P50_MS = 600.0
SERVER_TIMINGS = ("server_asr_ms", "server_llm_first_token_ms", "server_first_audio_ms", "server_total_ms")



def voice_stack(local):
    """The local config cut to the voice-chat flow: its three models, its flow settings, the gateway
    (and the streaming ASR model its realtime sessions take partial transcripts from)."""
    from mmserve.config.app import AppArgs
    from mmserve.config.flows import FlowsArgs

    flow = local.served_flows()["voice-chat"]
    names = {flow.asr, flow.llm, flow.tts, local.gateway.realtime.partials_model}
    return AppArgs(models=[m for m in local.models if m.name in names],
                   flows=FlowsArgs(voice_chat=local.flows.voice_chat), gateway=local.gateway)




def load_tool(url: str, route: str, level: int, out: Path, opts: argparse.Namespace,
              deployments: tuple[str, ...]) -> dict:
    """One closed-loop level of `python -m bench loadtest` on one route: its report, plus the CPU
    each part of the stack used meanwhile (`cpu_cores`, warm-up included)."""
    cmd = [sys.executable, "-m", "bench.loadtest", "--url", url, "--routes", route, "--sweep", str(level),
           "--duration", str(opts.duration), "--warmup", str(opts.warmup), "--audio", "en",
           "--realtime-silence-ms", str(opts.silence_ms), "--realtime-chunk-ms", str(opts.chunk_ms),
           "--realtime-clip", "en", "--timeout", "120", "--out", str(out)]
    with CpuMeter(deployments) as cpu:
        subprocess.run(cmd, cwd=ROOT, check=True)
    report = json.loads(out.read_text())
    report["levels"][0]["cpu_cores"] = cpu.cores
    return report


def process_role(pid: int, deployments: tuple[str, ...]) -> str | None:
    """A Ray worker's part of the stack from its process title: `ray::ServeReplica:<app>:<deployment>`
    (plus `.<method>` while it runs one) gives the deployment, matched against the known names since
    those may hold dots; `ray::ProxyActor` and the like give the actor's class. None: not Ray's."""
    try:
        title = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return None
    if not title.startswith("ray::"):
        return None
    name = title.removeprefix("ray::").split(" ", 1)[0]
    if name.startswith("ServeReplica:"):
        rest = name.split(":", 2)[-1]
        return max((d for d in deployments if rest == d or rest.startswith(d + ".")), key=len, default=rest)
    return name.split(".", 1)[0]


class CpuMeter:
    """CPU seconds of every Ray worker process (by role: each deployment, ProxyActor, ...) and of the
    load tool (this process's children) over a `with` block, as cores: CPU seconds / wall seconds.
    A replica that starts inside the block counts from its start; one that ends inside it is lost."""

    def __init__(self, deployments: tuple[str, ...]):
        self.deployments = deployments

    def __enter__(self) -> "CpuMeter":
        self._start, self._wall = self._sample(), time.monotonic()
        self._children = self._children_cpu()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.monotonic() - self._wall
        used: dict[str, float] = {}
        for pid, (role, seconds) in self._sample().items():
            before = self._start.get(pid)
            used[role] = used.get(role, 0.0) + seconds - (before[1] if before and before[0] == role else 0.0)
        used["load tool"] = self._children_cpu() - self._children
        self.cores = {role: round(s / wall, 3) for role, s in sorted(used.items(), key=lambda kv: -kv[1])}

    def _sample(self) -> dict[int, tuple[str, float]]:
        out = {}
        for proc in psutil.process_iter():
            role = process_role(proc.pid, self.deployments)
            if role is not None:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    out[proc.pid] = (role, times.user + times.system)
        return out

    @staticmethod
    def _children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def vad_cpu_cost(vad_folder: Path, chunks_ms: tuple[int, ...] = (40, 120), seconds: int = 20) -> dict:
    """CPU ms the streaming VAD spends per second of (near-silent) audio when fed `chunk_ms` at a time,
    in this process, without Ray: what `vad_chunk_ms` and `vad_listen_chunk_ms` trade."""
    import numpy as np

    from mmserve.runners.paraformer import SAMPLE_RATE, StreamingVad

    vad = StreamingVad(str(vad_folder), "cpu", 1)
    audio = (np.random.default_rng(0).standard_normal(seconds * SAMPLE_RATE) * 1e-3).astype("float32")
    out = {}
    for chunk_ms in chunks_ms:
        step, state, start = SAMPLE_RATE * chunk_ms // 1000, None, time.process_time()
        for i in range(0, len(audio), step):
            state = vad.step(state, audio[i:i + step], silence_ms=300, final=False).state
        out[f"{chunk_ms}_ms_chunks"] = round((time.process_time() - start) * 1000 / seconds, 1)
    return out


def idle_sessions(url: str, sessions: int, seconds: float, chunk_ms: int) -> None:
    """`sessions` realtime sessions (server VAD on) streaming silence at real-time pace for `seconds`."""
    import threading

    from websockets.sync.client import connect

    from bench.loadtest.realtime import RATE, expect, session_update, stream_at_real_time, ws_url

    failures: list[str] = []

    def listen() -> None:
        try:
            with connect(ws_url(url, None), max_size=None, open_timeout=60) as ws:
                expect(ws, "session.created", 60)
                ws.send(json.dumps(session_update(500, None)))
                expect(ws, "session.updated", 60)
                stream_at_real_time(ws, bytes(int(seconds * RATE) * 2), chunk_ms, time.perf_counter())
        except Exception as exc:  # reported, never hidden: an idle figure without its sessions means nothing
            failures.append(f"{type(exc).__name__}: {exc}")

    if sessions == 0:  # the stack's background over the same window
        time.sleep(seconds)
        return
    threads = [threading.Thread(target=listen) for _ in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} idle sessions failed: {failures[:3]}")


def pick(p: dict | None, *keys: str) -> dict:
    return {k: (None if p is None else p.get(k)) for k in keys}


def voice_chat_level(level: dict) -> dict:
    r = level["routes"]["voice-chat"]
    return {"sessions": level["users"], "requests": r["requests"], "ok": r["ok"], "errors": r["errors"],
            "error_examples": r["error_examples"],
            "first_audio_ms": pick(r.get("first_audio_ms"), "p50", "p95", "min", "max"),
            "whole_reply_ms": pick(r["latency_ms"], "p50", "p95"),
            "server_timings_p50_ms": {k.removeprefix("server_"): (r["reported"].get(k) or {}).get("p50")
                                      for k in SERVER_TIMINGS},
            "loadavg_before": level["loadavg_before"], "loadavg_after": level["loadavg_after"],
            "cpu_cores": level["cpu_cores"]}


def turn_level(level: dict, route: str) -> tuple[dict, dict, dict]:
    """What every realtime level reports (turns, errors, load, CPU), the route's figures, and its
    after-speech ones."""
    r = level["routes"][route]
    common = {"sessions": level["users"], "turns": r["requests"], "ok": r["ok"], "errors": r["errors"],
              "error_examples": r["error_examples"], "loadavg_before": level["loadavg_before"],
              "loadavg_after": level["loadavg_after"], "cpu_cores": level["cpu_cores"]}
    return common, r, r.get("after_speech_ms") or {}


def realtime_level(level: dict) -> dict:
    common, r, after = turn_level(level, "realtime")
    return {**common,
            "first_audio_after_speech_ms": pick(after.get("first_audio_after_speech_ms"), "p50", "p95", "min", "max"),
            "after_speech_p50_ms": {k.removesuffix("_after_speech_ms"): (after.get(k) or {}).get("p50")
                                    for k in after},
            "per_turn_p50_ms": {k: (r["reported"].get(k) or {}).get("p50") for k in
                                ("speech_stopped_after_speech_ms", "recognition_after_stop_ms",
                                 "first_audio_after_response_ms")},
            "vad_end_offset_p50_ms": (r["reported"].get("vad_end_offset_ms") or {}).get("p50")}


def transcription_level(level: dict) -> dict:
    common, r, after = turn_level(level, "realtime-transcription")
    reported = r["reported"]
    return {**common,
            "transcript_after_speech_ms": pick(after.get("transcript_after_speech_ms"), "p50", "p95", "min", "max"),
            "speech_stopped_after_speech_ms": pick(after.get("speech_stopped_after_speech_ms"), "p50", "p95"),
            # per turn: its partials' median delay (append sent -> delta received) and their worst
            "partial_delay_ms_turn_median": pick(reported.get("partial_delay_ms"), "p50", "p99"),
            "partial_delay_ms_turn_max": pick(reported.get("partial_delay_max_ms"), "p50", "p99"),
            "partials_per_turn_p50": (reported.get("partials") or {}).get("p50")}


def idle_level(url: str, sessions: int, opts: argparse.Namespace, deployments: tuple[str, ...]) -> dict:
    load_before = rw.loadavg()
    with CpuMeter(deployments) as cpu:
        idle_sessions(url, sessions, opts.idle_seconds, opts.chunk_ms)
    return {"sessions": sessions, "seconds": opts.idle_seconds, "cpu_cores": cpu.cores,
            "loadavg_before": load_before, "loadavg_after": rw.loadavg()}


def goal(levels: list[dict], key: str) -> dict:
    one = next((lvl for lvl in levels if lvl["sessions"] == 1), None)
    p50 = None if one is None else one[key]["p50"]
    return {"p50_ms_with_1_session": p50, "goal_p50_ms": GOAL_P50_MS, "met": None if p50 is None else p50 <= GOAL_P50_MS}


def main() -> None:
    if sys.argv[1:2] == ["gpu"]:
        sys.exit(main_gpu(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,4,8", help="concurrent sessions, one level after another")
    parser.add_argument("--duration", type=float, default=60, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=10, help="seconds of load before each level is measured")
    parser.add_argument("--silence-ms", type=int, default=300, help="realtime: server_vad silence_duration_ms")
    parser.add_argument("--chunk-ms", type=int, default=40, help="realtime: audio per input_audio_buffer.append")
    parser.add_argument("--scenarios", default="voice-chat,realtime,transcription,idle")
    parser.add_argument("--turn-detectors", default="silero,asr", help="realtime and idle: one run per detector")
    parser.add_argument("--partials", default="on,off", help="realtime and transcription with Silero: with the "
                        "config's partials_model (on) and without (off), one run each")
    parser.add_argument("--transcription-levels", default="16", help="concurrent transcription sessions")
    parser.add_argument("--idle-sessions", default="0,16", help="idle: sessions streaming silence, per level")
    parser.add_argument("--idle-seconds", type=float, default=30, help="idle: measured seconds per level")
    parser.add_argument("--models", type=Path, default=None, help="tiny model root (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--serve-only", action="store_true", help="start the stack, print its URL, wait")
    opts = parser.parse_args()
    scenarios = opts.scenarios.split(",")

    from ray import serve

    from gateway.proxy_guard import IMPORT_PATH
    from graphs.app import build_app
    from mmserve.config.app import load_app_args
    from mmserve.tiny.catalog import build_all

    models = opts.models or Path(tempfile.mkdtemp(prefix="mmserve-bench-"))
    build_all(models, ["funasr", "funasr-online", "qwen", "qwen_lora", "chattts"])  # qwen_lora: the LLM's adapters
    os.environ["MMSERVE_MODEL_ROOT"] = str(models)
    os.environ["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"] = IMPORT_PATH  # as scripts/run_local.sh serves
    app_args = voice_stack(load_app_args(ROOT / "configs" / "local.yaml"))
    vad_cost = None if opts.serve_only or "realtime" not in scenarios else vad_cpu_cost(
        models / "funasr" / "vad", (app_args.gateway.realtime.vad_chunk_ms, app_args.gateway.realtime.vad_listen_chunk_ms))
    load_start = rw.loadavg()
    results: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="mmserve-voice-"))
    detectors = opts.turn_detectors.split(",")
    levels_asked = [opts.levels, opts.transcription_levels, opts.idle_sessions]
    most_sessions = max([app_args.gateway.realtime.max_sessions,
                         *(int(n) for spec in levels_asked for n in spec.split(","))])  # none refused for its limit

    partials_model = app_args.gateway.realtime.partials_model
    variants = [(detector, partials == "on") for detector in detectors
                for partials in (opts.partials.split(",") if detector == "silero" else ["on"])]

    def deploy(detector: str, partials: bool = True) -> None:
        """The app with the gateway finding turns with `detector`, with or without partial transcripts
        (only the gateway changes between them)."""
        realtime = app_args.gateway.realtime.model_copy(update={
            "turn_detector": detector, "max_sessions": most_sessions,
            "partials_model": partials_model if partials else None})
        serve.run(build_app(app_args.model_copy(update={
            "gateway": app_args.gateway.model_copy(update={"realtime": realtime})})), name="voice", route_prefix="/")
        wait_ready(url)

    with local_stack(models) as stack:
        url = stack.url
        deploy(detectors[0])
        print(f"serving on {url}", flush=True)
        if opts.serve_only:  # until SIGTERM (a background job ignores SIGINT), then the cleanup below
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            while True:
                time.sleep(3600)
        sessions = [int(n) for n in opts.levels.split(",")]
        deployments = (*(m.name for m in app_args.models), "gateway")

        def level(route: str, n: int) -> dict:
            return load_tool(url, route, n, tmp / f"{route}-{n}.json", opts, deployments)["levels"][0]

        if "voice-chat" in scenarios:
            levels = [voice_chat_level(level("voice-chat", n)) for n in sessions]
            results["voice-chat"] = {"levels": levels, "goal": goal(levels, "first_audio_ms")}
        for detector, partials in variants:
            if not {"realtime", "transcription", "idle"} & set(scenarios):
                break
            deploy(detector, partials)
            name = detector + ("+partials" if partials and partials_model else "")
            if "realtime" in scenarios:
                levels = [realtime_level(level("realtime", n)) for n in sessions]
                results[f"realtime/{name}"] = {"levels": levels, "goal": goal(levels, "first_audio_after_speech_ms")}
            if "transcription" in scenarios and detector == "silero":
                results[f"transcription/{name}"] = {"levels": [
                    transcription_level(level("realtime-transcription", int(n)))
                    for n in opts.transcription_levels.split(",")]}
            if "idle" in scenarios and (partials or len(variants) == 1):
                results[f"idle/{detector}"] = {"levels": [
                    idle_level(url, int(n), opts, deployments) for n in opts.idle_sessions.split(",")]}
    flow = app_args.served_flows()["voice-chat"]
    out = {
        "tool": "bench.voice",
        "command": rw.command("voice"),
        "date": rw.now(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_at_start": load_start,
                    "loadavg_at_end": rw.loadavg()},
        "settings": {"config": "configs/local.yaml (voice-chat models only)", "asr": flow.asr, "llm": flow.llm,
                     "tts": flow.tts, "max_new_tokens": flow.max_new_tokens, "clip": "tests/data/speech_en.wav",
                     "realtime_silence_duration_ms": opts.silence_ms, "realtime_chunk_ms": opts.chunk_ms,
                     "realtime_input_rate": 24000,
                     "realtime_vad": app_args.gateway.realtime.model_dump(include={"vad_chunk_ms", "vad_listen_chunk_ms"}),
                     "turn_detectors": detectors, "idle_seconds": opts.idle_seconds,
                     "partials_model": partials_model, "partials": opts.partials,
                     "realtime_max_sessions": most_sessions,
                     "levels": opts.levels, "duration_s": opts.duration,
                     "warmup_s": opts.warmup, "mode": "closed loop: each session starts its next turn at once"},
        "scenarios": results,
        "vad_cpu_ms_per_audio_s": vad_cost,
    }
    rw.write(opts.out, out)
    print(f"wrote {opts.out}")


# ---------------------------------------------------------------- the GPU check's case: runners only
def speak_first_clause(llm_stream, tts, voice_args) -> dict:
    """Feed the LLM's deltas through the flow's clause splitter and speak each clause until ChatTTS
    gives a first chunk (a clause it refuses or gives no audio for is skipped, as the flow does)."""
    from graphs.clauses import ClauseSplitter
    from mmserve.errors import InvalidInput
    from mmserve.protocol.tts import SpeechRequest

    splitter = ClauseSplitter(min_chars=voice_args.min_clause_chars, max_chars=voice_args.max_clause_chars)
    t = {"deltas": 0, "skipped_clauses": 0}

    def spoken(clause: str) -> bool:
        t.setdefault("first_clause_s", time.perf_counter())
        try:
            chunks = tts.stream(SpeechRequest(text=clause, seed=0))
        except InvalidInput:
            t["skipped_clauses"] += 1
            return False
        try:
            chunk = next(chunks, None)
        finally:
            chunks.close()
        if chunk is None:
            t["skipped_clauses"] += 1
            return False
        t.update(first_audio_s=time.perf_counter(), clause_chars=len(clause))
        return True

    try:
        for delta in llm_stream:
            t["deltas"] += 1
            t.setdefault("first_token_s", time.perf_counter())
            if any(spoken(clause) for clause in splitter.feed(delta)):
                return t
        any(spoken(clause) for clause in splitter.flush())
        return t
    finally:
        llm_stream.close()


def voice_turn_figures(ctx: dict, turns: int) -> dict:
    import statistics

    from bench.gpu import bench as gb
    from mmserve.config.flows import FlowsArgs
    from mmserve.media import decode_audio
    from mmserve.protocol.llm import ChatMessage, GenerationParams
    from mmserve.runners.chattts import TtsArgs, TtsRunner
    from mmserve.runners.llm import LlmArgs, LlmRunner
    from mmserve.runners.paraformer import AsrArgs, AsrRunner

    tiny, device = ctx["tiny"], ctx["device"]
    asr_device = "cpu"  # serve_config.yaml serves Paraformer on CPU (num_gpus 0)
    dtype = "float32" if tiny else gb.production("qwen2.5-7b-instruct")["runner"].get("dtype", "bfloat16")
    voice_args = FlowsArgs().args_of("voice-chat")
    build = {
        "asr": gb.build_once(gb.model_dir(ctx, "asr"), lambda d: gb.build_asr(d, tiny)),
        "llm": gb.build_once(gb.model_dir(ctx, "llm"), lambda d: gb.build_llm(d, tiny, device, gb._dtype(dtype, device))),
        "tts": gb.build_once(gb.model_dir(ctx, "tts"), lambda d: gb.build_tts(d, tiny)),
    }
    asr_dir = gb.model_dir(ctx, "asr")
    with gb.Clock(device) as load:
        asr = AsrRunner(AsrArgs(model=str(asr_dir / "paraformer"), vad_model=str(asr_dir / "vad"),
                                punc_model=str(asr_dir / "punc"), device=asr_device, ncpu=min(os.cpu_count() or 1, 8)))
        llm = LlmRunner(LlmArgs(model=str(gb.model_dir(ctx, "llm")), device=device, dtype=dtype,
                                max_new_tokens=voice_args.max_new_tokens))
        tts = TtsRunner(TtsArgs(model=str(gb.model_dir(ctx, "tts")), device=device,
                                max_new_token=384 if device.startswith("cuda") else 16))
    for runner in (asr, llm, tts):
        runner.warmup()
    speech = decode_audio((ROOT / "tests" / "data" / "speech_en.wav").read_bytes()).samples
    runs = []
    for _ in range(turns):
        start = time.perf_counter()
        text = asr.transcribe(speech).text.strip() or "Hello."  # random weights may recognise nothing
        asr_end = time.perf_counter()
        messages = [ChatMessage(role="system", content=voice_args.system_prompt), ChatMessage(role="user", content=text)]
        stream = llm.stream(messages, GenerationParams(max_new_tokens=voice_args.max_new_tokens,
                                                       temperature=voice_args.temperature))
        t = speak_first_clause(stream, tts, voice_args)
        if "first_audio_s" not in t:
            raise RuntimeError(f"no clause of the reply gave audio ({t['deltas']} deltas, {t['skipped_clauses']} skipped)")
        runs.append({"asr_ms": (asr_end - start) * 1000, "llm_first_token_ms": (t["first_token_s"] - start) * 1000,
                     "first_clause_ms": (t["first_clause_s"] - start) * 1000,
                     "first_audio_ms": (t["first_audio_s"] - start) * 1000, "deltas_to_first_clause": t["deltas"],
                     "clause_chars": t["clause_chars"], "skipped_clauses": t["skipped_clauses"]})
    median = {k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0]}
    return {"build": build, "load_s": round(load.s, 2), "load_peak_gib": load.peak_gib, "llm_dtype": dtype,
            "asr_device": asr_device, "turns": len(runs), "median": median, "runs": runs,
            "goal_first_audio_ms": GOAL_P50_MS, "goal_met": median["first_audio_ms"] <= GOAL_P50_MS,
            "note": "random weights: the first clause ends where the splitter cuts random text (punctuation or "
                    f"{voice_args.max_clause_chars} chars), not where a trained model would end it"}


def main_gpu(argv: list[str]) -> int:
    import traceback

    from bench.gpu import bench as gb

    parser = argparse.ArgumentParser(prog="python -m bench voice gpu", description="voice chat's time to first audio, runners only")
    parser.add_argument("--tiny", action="store_true", help="tiny models on CPU (the dry run)")
    parser.add_argument("--device", default=None, help="LLM and TTS device (default cuda, cpu with --tiny)")
    parser.add_argument("--work", default="/tmp/mmserve-gpu-work", help="model folders, shared with bench.gpu.bench")
    parser.add_argument("--turns", type=int, default=None, help="turns timed (default 3 on a GPU, 1 on CPU)")
    parser.add_argument("--out", action="append", default=[], help="folder for gpu-voice.json (repeatable)")
    args = parser.parse_args(argv)
    device = args.device or ("cpu" if args.tiny else "cuda")
    out_dirs = [Path(d) for d in args.out or [BENCH_DIR]]
    record = {"name": "voice", "status": "started", "mode": f"{'tiny' if args.tiny else 'real-size'} on {device}",
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "machine": gb.machine(), "measures": "one voice-chat turn through the runners: ASR -> LLM streamed to "
              "its first clause -> ChatTTS streamed to its first chunk (time to first audio)"}
    gb.write(record, out_dirs)
    t0 = time.perf_counter()
    try:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU visible")
        gb.quiet_progress_bars()
        torch.manual_seed(0)
        ctx = {"tiny": args.tiny, "device": device, "work": Path(args.work)}
        record.update(status="ok", figures=voice_turn_figures(ctx, args.turns or (3 if device.startswith("cuda") else 1)))
    except Exception as exc:  # noqa: BLE001 -- recorded, as bench.gpu.bench records its failures
        record.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()[-4000:])
    record["wall_s"] = round(time.perf_counter() - t0, 2)
    gb.write(record, out_dirs)
    median = (record.get("figures") or {}).get("median")
    print(json.dumps({"name": "voice", "status": record["status"], "wall_s": record["wall_s"], "median": median,
                      "error": record.get("error")}))
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    main()
