"""mmserve's own Prometheus metrics appear on Ray's metrics endpoint after real requests."""

from __future__ import annotations

import os
import time

import httpx

from tests.helpers import SPEECH_ZH

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
    deadline, missing = time.monotonic() + 90, EXPECTED
    while missing and time.monotonic() < deadline:
        try:
            text = httpx.get(url, timeout=5).text
        except httpx.HTTPError:
            text = ""
        missing = [name for name in EXPECTED if name not in text]
        time.sleep(2)
    assert not missing, f"not exported: {missing}"
    assert 'reason="invalid_input"' in text
    assert 'deployment="paraformer"' in text  # a model's deployment is named after the model
