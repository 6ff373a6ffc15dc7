"""mmserve's own Prometheus metrics appear on Ray's metrics endpoint after real requests."""

from __future__ import annotations

import os

import httpx

from tests.helpers import SPEECH_ZH, wait_until

EXPECTED = [
    "ray_mmserve_audio_seconds_total",
    "ray_mmserve_real_time_factor_bucket",
    "ray_mmserve_images_generated_total",
    "ray_mmserve_seconds_per_image_bucket",
    "ray_mmserve_tokens_generated_total",
    "ray_mmserve_time_to_first_token_ms_bucket",
    "ray_mmserve_time_to_first_audio_ms_bucket",
    "ray_mmserve_batch_size_bucket",
    "ray_mmserve_rejected_requests_total",
]
EXPECTED_LABELS = [
    'reason="invalid_input"',  # the 400 below, counted by the gateway
    'deployment="paraformer"',  # a model's deployment is named after the model
]


def test_custom_metrics_are_scraped_after_real_requests(local_stack):
    httpx.post(local_stack + "/v1/audio/transcriptions", files={"file": ("a.wav", SPEECH_ZH.read_bytes())},
               timeout=120).raise_for_status()
    httpx.post(local_stack + "/v1/images/generations", json={"prompt": "cat", "size": "64x64"},
               timeout=120).raise_for_status()
    with httpx.stream("POST", local_stack + "/v1/chat/completions", timeout=120,
                      json={"messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 4}) as r:
        r.read()
    with httpx.stream("POST", local_stack + "/v1/audio/speech", timeout=120,
                      json={"input": "你好。", "response_format": "pcm"}) as r:
        r.read()
    assert httpx.post(local_stack + "/v1/images/generations", json={"prompt": ""}, timeout=30).status_code == 400

    url = f"http://127.0.0.1:{os.environ['MMSERVE_TEST_METRICS_PORT']}/metrics"
    # Ray's exporter pushes each series on its own schedule: wait for every name and every label asserted.
    wait_until(lambda: not missing(scrape(url)), timeout=180, what=lambda: f"these to be exported: {missing(scrape(url))}",
               interval=1)


def scrape(url: str) -> str:
    try:
        return httpx.get(url, timeout=10).text
    except httpx.HTTPError:
        return ""


def missing(text: str) -> list[str]:
    """The expected names and labels the scrape lacks."""
    return [needle for needle in (*EXPECTED, *EXPECTED_LABELS) if needle not in text]
