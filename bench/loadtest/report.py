"""Per-route figures of one load level, from the raw samples (no locust or gevent needed here).

Windows: a request counts towards latency when it *started* (or, open loop, was scheduled) inside
the measured window [t0, t1); in-flight requests are allowed to finish after t1. Throughput counts
successful replies that *completed* inside the window, divided by its length, so a reply started
during warm-up but finished in the window counts for throughput and not for latency.
"""

from __future__ import annotations

from collections import Counter

from bench.report import percentiles

# The modality figure of each route: which per-request metric is a "first chunk" time, and
# whether its latency is divided by audio seconds (real-time factor).
FIRST_CHUNK = {"speech": "first_audio_ms", "voice-chat": "first_audio_ms",
               "chat": "ttft_ms", "chat-vlm": "ttft_ms"}
# Realtime turns: figures timed from the end of the user's speech, not from the session's start.
AFTER_SPEECH = {"realtime": ("first_audio_after_speech_ms", "speech_stopped_after_speech_ms",
                             "transcript_after_speech_ms", "response_created_after_speech_ms",
                             "response_done_after_speech_ms"),
                "realtime-transcription": ("speech_stopped_after_speech_ms", "transcript_after_speech_ms")}
RTF_OF = {"transcribe": "audio_s", "speech": "audio_s", "speech-whole": "audio_s", "music": "audio_s"}


def summarize_route(name: str, samples: list, t0: float, t1: float) -> dict:
    window = t1 - t0
    measured = [s for s in samples if t0 <= s.origin < t1]
    ok = [s for s in measured if s.outcome.error is None]
    done_in_window = [s for s in samples if t0 <= s.end <= t1 and s.outcome.error is None]
    errors = Counter(str(s.outcome.status) if s.outcome.status >= 400 or s.outcome.status == 0 else "bad-body"
                     for s in measured if s.outcome.error is not None)
    examples = list(dict.fromkeys(s.outcome.error for s in measured if s.outcome.error))[:3]
    latency_ms = [(s.end - s.origin) * 1000 for s in ok]
    failed = [s for s in measured if s.outcome.error is not None]
    out: dict = {
        "requests": len(measured),
        "ok": len(ok),
        "errors": dict(errors),
        "error_examples": examples,
        "throughput_rps": round(len(done_in_window) / window, 4) if window > 0 else 0.0,
        "latency_ms": percentiles(latency_ms, (50, 90, 95, 99)),
        # how fast refusals come back (a 503 should be answered at once), by status
        "error_latency_ms": {status: percentiles([(s.end - s.origin) * 1000 for s in failed
                                                  if str(s.outcome.status) == status]) for status in errors},
        "retry_after_503s": sum(1 for s in failed if s.outcome.status == 503 and "[Retry-After:" in s.outcome.error),
    }
    if name in FIRST_CHUNK:
        firsts = [(s.outcome.first_s - s.origin) * 1000 for s in ok if s.outcome.first_s is not None]
        out[FIRST_CHUNK[name]] = percentiles(firsts, (50, 90, 95, 99))
    if name in AFTER_SPEECH:
        out["after_speech_ms"] = {key: percentiles([s.outcome.metrics[key] for s in ok if key in s.outcome.metrics],
                                                   (50, 90, 95, 99)) for key in AFTER_SPEECH[name]}
    if name in RTF_OF:
        key = RTF_OF[name]
        rtf = [(s.end - s.origin) / s.outcome.metrics[key] for s in ok if s.outcome.metrics.get(key)]
        out["rtf"] = percentiles(rtf)
    if name in ("chat", "chat-vlm"):
        out["output_tokens_per_s"] = round(sum(s.outcome.metrics.get("tokens", 0) for s in done_in_window) / window, 3)
        out["decode_tokens_per_s"] = percentiles(
            [s.outcome.metrics["decode_tokens_per_s"] for s in ok if "decode_tokens_per_s" in s.outcome.metrics])
    if name in ("images", "speech-to-image"):
        out["images_per_s"] = round(sum(s.outcome.metrics.get("images", 0) for s in done_in_window) / window, 4)
    # Everything else the replies reported (audio seconds, the server's own stage timings).
    keys = sorted({k for s in ok for k in s.outcome.metrics} - {"decode_tokens_per_s", "images"})
    out["reported"] = {k: percentiles([s.outcome.metrics[k] for s in ok if k in s.outcome.metrics], (50, 99))
                       for k in keys}
    return out


def summarize_level(result: dict, mix: dict[str, int], raw: bool = False) -> dict:
    plan, t0, t1 = result["plan"], result["t0"], result["t1"]
    by_route = {name: [s for s in plan.samples if s.route == name] for name in mix}
    routes = {name: summarize_route(name, samples, t0, t1) for name, samples in by_route.items()}
    for name, summary in routes.items():
        summary["locust"] = result["locust"].get(name)
        if raw:
            summary["raw_latency_ms"] = [round((s.end - s.origin) * 1000, 3) for s in by_route[name]
                                         if t0 <= s.origin < t1 and s.outcome.error is None]
    totals = {
        "requests": sum(r["requests"] for r in routes.values()),
        "ok": sum(r["ok"] for r in routes.values()),
        "errors": sum(sum(r["errors"].values()) for r in routes.values()),
        "throughput_rps": round(sum(r["throughput_rps"] for r in routes.values()), 4),
    }
    return {"window_s": round(t1 - t0, 3), "unfinished_after_drain": result["unfinished"],
            "late_starts": result["late_starts"], "routes": routes, "totals": totals}

