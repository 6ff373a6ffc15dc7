"""Serving overhead: each flow over HTTP vs the same runners called in one process, same inputs.

    python -m bench overhead [--pairs 40] [--out docs/bench/overhead.json]

Starts a local Ray cluster, serves (a) the speech -> text -> image flow on the tiny models and
(b) transcription alone on a Paraformer-large-sized recognizer (random weights, 10 s of audio),
loads the same runners in this process, and alternates in-process calls and HTTP requests
(one at a time) so that machine noise hits both alike. Reports p50/p99 of each and the
overhead per hop = (HTTP - in-process) / hops, where a hop is one deployment the request passes
through (gateway + the model deployments it calls).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import report  # noqa: E402
from bench.report import BENCH_DIR, ROOT  # noqa: E402
from bench.stack import local_stack  # noqa: E402
from deployments.common import with_resolved_paths  # noqa: E402
from graphs.app import build_app  # noqa: E402
from graphs.speech_to_image import REWRITE_SYSTEM_PROMPT  # noqa: E402
from mmserve.config import BatchArgs  # noqa: E402
from mmserve.config.app import AppArgs, load_app_args  # noqa: E402
from mmserve.config.flows import FlowsArgs  # noqa: E402
from mmserve.media import b64encode, decode_audio, encode_png, encode_wav  # noqa: E402
from mmserve.protocol.image import ImageRequest  # noqa: E402
from mmserve.protocol.llm import ChatMessage, GenerationParams  # noqa: E402
from mmserve.runners.llm import LlmRunner  # noqa: E402
from mmserve.runners.paraformer import AsrRunner  # noqa: E402
from mmserve.runners.sd3 import ImageRunner  # noqa: E402
from mmserve.tiny import funasr as tiny_funasr  # noqa: E402
from mmserve.tiny.catalog import build_all  # noqa: E402

SPEECH = ROOT / "tests" / "data" / "speech_zh.wav"
IMAGE_OPTIONS = {"width": 128, "height": 128, "seed": 0}


def percentiles(values: list[float]) -> dict:
    """p50 (the median), p99 (the nearest rank), mean and count, as this benchmark has always recorded them."""
    return {"p50": report.percentiles(values, (50,), extra=(), digits=2)["p50"],
            **report.percentiles(values, (99,), method="nearest", extra=("mean", "n"), digits=2)}


def breakdown(inproc_stages: list[dict], http_timings: list[dict], http_ms: list[float]) -> dict:
    """Where a flow's overhead goes, from paired requests: each stage as the gateway timed it
    (handle call: transport + the replica's queue and model work) minus the same stage in process,
    and the rest of the HTTP time outside the flow (client <-> proxy <-> gateway, upload parsing,
    base64 + JSON of the reply) minus the audio decoding both sides do."""
    out = {f"{stage}_stage_minus_in_process": round(statistics.median(
        t[f"{stage}_ms"] - s[stage] for s, t in zip(inproc_stages, http_timings)), 2) for stage in ("asr", "rewrite", "image")}
    out["outside_the_flow"] = round(statistics.median(
        h - t["total_ms"] - s["decode"] for h, t, s in zip(http_ms, http_timings, inproc_stages)), 2)
    return out


def timed_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class InProcessFlow:
    """What the gateway and the three deployments do for one request, without Ray or HTTP."""

    def __init__(self, args: AppArgs):
        self.asr = AsrRunner(with_resolved_paths(args.default_model("asr")))
        self.llm = LlmRunner(with_resolved_paths(args.default_model("llm")))
        self.image = ImageRunner(with_resolved_paths(args.default_model("image")))
        self.rewrite = args.flows.args_of("speech-to-image")

    def __call__(self, audio_bytes: bytes) -> dict:
        """The flow's result; `self.stages` keeps each stage's wall time (ms) for the breakdown."""
        start = time.perf_counter()
        audio = decode_audio(audio_bytes)
        decoded = time.perf_counter()
        transcript = self.asr.transcribe(audio.samples)
        asr_done = time.perf_counter()
        messages = [ChatMessage(role="system", content=REWRITE_SYSTEM_PROMPT),
                    ChatMessage(role="user", content=transcript.text)]
        params = GenerationParams(max_new_tokens=self.rewrite.rewrite_max_new_tokens,
                                  temperature=self.rewrite.rewrite_temperature)
        prompt = " ".join(self.llm.chat(messages, params).text.split()) or transcript.text
        rewrite_done = time.perf_counter()
        request = ImageRequest(prompt=prompt, **IMAGE_OPTIONS)
        pngs = [encode_png(i) for i in self.image.generate([request])[0]]
        image_done = time.perf_counter()
        self.stages = {"decode": (decoded - start) * 1000, "asr": (asr_done - decoded) * 1000, "rewrite": (rewrite_done - asr_done) * 1000,
                       "image": (image_done - rewrite_done) * 1000}
        return {"transcript": transcript.text, "prompt": prompt, "images": [b64encode(png) for png in pngs]}


def noop_chain_app():
    """Ray Serve's own floor on this machine: the flow's shape (HTTP -> FastAPI ingress parsing the
    same upload -> three deployments called in turn with the decoded audio), with no model work."""
    from fastapi import FastAPI, Request
    from ray import serve

    api = FastAPI()

    @serve.deployment(name="noop")
    class NoOp:
        async def __call__(self, samples: np.ndarray) -> int:
            return await asyncio.to_thread(len, samples)

    @serve.deployment(name="noop_ingress")
    @serve.ingress(api)
    class NoOpIngress:
        def __init__(self, *handles):
            self.handles = handles

        async def chain(self, request):
            form = await request.form()
            audio = decode_audio(await form["file"].read())
            for handle in self.handles:
                await handle.remote(audio.samples)
            return {"ok": True}

        chain.__annotations__["request"] = Request  # a class, not a string: FastAPI must see it in the replica
        api.post("/chain")(chain)

    return NoOpIngress.bind(*(NoOp.options(name=f"noop_{i}").bind() for i in range(3)))


def ten_seconds_of_speech() -> bytes:
    audio = decode_audio(SPEECH.read_bytes())
    reps = int(np.ceil(10 * audio.sample_rate / len(audio.samples)))
    return encode_wav(np.tile(audio.samples, reps)[: 10 * audio.sample_rate], audio.sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=40, help="in-process/HTTP pairs per case")
    parser.add_argument("--models", type=Path, default=None, help="tiny model root (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "overhead.json")
    opts = parser.parse_args()

    import ray
    from ray import serve

    models = opts.models or Path(tempfile.mkdtemp(prefix="mmserve-bench-"))
    build_all(models, ["funasr", "sd3", "qwen"])
    if not (models / "funasr_large" / "paraformer" / "model.pt").exists():
        tiny_funasr.build(models / "funasr_large", size="large")
    os.environ["MMSERVE_MODEL_ROOT"] = str(models)
    torch.set_num_threads(1)  # replicas with num_cpus < 1 get OMP_NUM_THREADS=1 from Ray: same here

    local = load_app_args(ROOT / "configs" / "local.yaml")
    batched_args = AppArgs(models=[local.default_model(task) for task in ("asr", "llm", "image")],
                           flows=FlowsArgs(speech_to_image=local.flows.speech_to_image),
                           gateway=local.gateway.without_partials())
    # Transport overhead alone: a lone request under @serve.batch waits batch_wait_timeout_s for
    # company, a latency/throughput policy measured separately (the "batch_wait" case).
    flow_args = batched_args.model_copy(deep=True)
    flow_args.default_model("image").batch = BatchArgs(max_batch_size=1)
    large_asr = flow_args.default_model("asr").model_copy(deep=True)
    large_asr.runner = large_asr.runner.model_copy(update={
        "model": "funasr_large/paraformer", "vad_model": "funasr_large/vad", "punc_model": "funasr_large/punc"})
    large_args = AppArgs(models=[large_asr], gateway=local.gateway.without_partials())

    with local_stack(models) as stack:
        base = stack.url
        flow = InProcessFlow(flow_args)
        large = AsrRunner(with_resolved_paths(large_asr))
        speech, long_speech = SPEECH.read_bytes(), ten_seconds_of_speech()
        client = httpx.Client(timeout=300)
        http_stages: list[dict] = []  # the flow's own per-stage timings, from each HTTP reply

        def http_flow(prefix: str):
            files = {"file": ("speech.wav", speech, "audio/wav")}
            data = {k: str(v) for k, v in IMAGE_OPTIONS.items()}
            response = client.post(f"{base}/{prefix}/v1/flows/speech-to-image", files=files, data=data)
            response.raise_for_status()
            http_stages.append(response.json()["timings"])

        def http_noop():
            client.post(f"{base}/noop/chain", files={"file": ("speech.wav", speech, "audio/wav")}).raise_for_status()

        def http_large():
            files = {"file": ("speech.wav", long_speech, "audio/wav")}
            client.post(base + "/large/v1/audio/transcriptions", files=files).raise_for_status()

        cases = {
            "speech_to_image_tiny": {"hops": 4, "app": lambda: build_app(flow_args), "prefix": "flow",
                                     "inproc": lambda: flow(speech), "http": lambda: http_flow("flow")},
            "speech_to_image_tiny_with_batch_wait": {
                "hops": 4, "app": lambda: build_app(batched_args), "prefix": "batched",
                "inproc": lambda: flow(speech), "http": lambda: http_flow("batched"),
                "note": "configs/local.yaml as is: ASR and SD3 wait up to 50 ms each for a batch to fill"},
            "transcription_paraformer_large_10s": {
                "hops": 2, "app": lambda: build_app(large_args), "prefix": "large",
                "inproc": lambda: large.transcribe(decode_audio(long_speech).samples), "http": http_large},
            "ray_serve_floor_no_models": {
                "hops": 4, "app": noop_chain_app, "prefix": "noop", "inproc": lambda: None, "http": http_noop,
                "floor": True,
                "note": "the flow's shape with no-op deployments: what Ray Serve itself costs on this machine"},
        }
        # One application at a time (idle replicas of the others would share the 2 cores), and within
        # it paired and alternating: each HTTP request follows its in-process twin, so slow drifts in
        # machine load hit both sides of a pair alike; the overhead is the median of paired differences.
        samples = {}
        for name, case in cases.items():
            serve.run(case["app"](), name=case["prefix"], route_prefix="/" + case["prefix"])
            for _ in range(2):  # warm-up: first calls compile kernels and fill caches on both sides
                case["inproc"](), case["http"]()
            http_stages.clear()
            run = samples[name] = {"inproc": [], "http": [], "inproc_stages": [], "loadavg_before": os.getloadavg()}
            for _ in range(opts.pairs):
                run["inproc"].append(timed_ms(case["inproc"]))
                if name.startswith("speech_to_image"):
                    run["inproc_stages"].append(dict(flow.stages))
                run["http"].append(timed_ms(case["http"]))
            run["http_stages"], run["loadavg_after"] = list(http_stages), os.getloadavg()
            serve.delete(case["prefix"])

    results = {}
    for name, case in cases.items():
        inproc, http = samples[name]["inproc"], samples[name]["http"]
        diffs = [h - i for h, i in zip(http, inproc)]
        results[name] = {
            "hops": case["hops"], "note": case.get("note", "@serve.batch max_batch_size 1 (no batch wait)"),
            "in_process_ms": percentiles(inproc), "http_ms": percentiles(http),
            "paired_overhead_ms": percentiles(diffs),
            "overhead_per_hop_ms": {q: round(v / case["hops"], 2) for q, v in percentiles(diffs).items() if q != "n"},
            "http_over_in_process_p50": None if case.get("floor") else
            round(statistics.median(http) / statistics.median(inproc), 4),
            "loadavg": [samples[name]["loadavg_before"][0], samples[name]["loadavg_after"][0]],
        }
        if samples[name]["http_stages"]:
            results[name]["breakdown_p50_ms"] = breakdown(samples[name]["inproc_stages"], samples[name]["http_stages"], http)
    record = {
        "command": report.command("overhead"),
        "date": report.now(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "versions": {"ray": ray.__version__, "torch": torch.__version__},
        "results": results,
    }
    report.write(opts.out, record, indent=2, newline=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
