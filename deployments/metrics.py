"""mmserve's Prometheus metrics, beyond Ray Serve's built-ins, via `ray.serve.metrics`.

Serve tags each series with deployment, replica and application; Ray's metrics agent exports them
(prefixed `ray_`) on every node's metrics port, e.g. `http://<node>:8080/metrics` with
`ray start --metrics-export-port=8080`. Created lazily inside replicas, where Serve's context exists.
"""

from __future__ import annotations

import functools

from ray.serve.metrics import Counter, Gauge, Histogram

LATENCY_MS = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]
SECONDS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60]
RATIO = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5]
SIZES = [1, 2, 4, 8, 16, 32]


@functools.cache
def audio_seconds() -> Counter:
    return Counter("mmserve_audio_seconds_total", "seconds of audio transcribed or synthesized", tag_keys=("task",))


@functools.cache
def real_time_factor() -> Histogram:
    return Histogram("mmserve_real_time_factor", "processing seconds per audio second (lower is faster)",
                     boundaries=RATIO, tag_keys=("task",))


@functools.cache
def images_generated() -> Counter:
    return Counter("mmserve_images_generated_total", "images generated")


@functools.cache
def seconds_per_image() -> Histogram:
    return Histogram("mmserve_seconds_per_image", "batch time divided by the images it made", boundaries=SECONDS)


@functools.cache
def tokens_generated() -> Counter:
    return Counter("mmserve_tokens_generated_total", "completion tokens generated", tag_keys=("task",))


@functools.cache
def time_to_first(what: str) -> Histogram:
    """what: 'token' (LLM/VLM streams) or 'audio' (TTS streams, voice chat)."""
    return Histogram(f"mmserve_time_to_first_{what}_ms", f"ms from request to the first {what}",
                     boundaries=LATENCY_MS, tag_keys=("task",))


@functools.cache
def batch_size() -> Histogram:
    return Histogram("mmserve_batch_size", "requests per @serve.batch call", boundaries=SIZES)


@functools.cache
def realtime_sessions() -> Gauge:
    return Gauge("mmserve_realtime_sessions", "open /v1/realtime sessions on this gateway replica")


@functools.cache
def rejected_requests() -> Counter:
    return Counter("mmserve_rejected_requests_total", "requests answered with an error, by reason",
                   tag_keys=("reason",))


REJECTION_REASONS = {400: "invalid_input", 401: "unauthorized", 404: "not_found", 413: "too_large",
                     422: "validation", 429: "overloaded", 503: "overloaded", 504: "timeout"}


def reason_for(status: int) -> str | None:
    if status < 400:
        return None
    return REJECTION_REASONS.get(status, "server_error" if status >= 500 else "client_error")
