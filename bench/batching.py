"""@serve.batch on vs off: throughput and latency against concurrency, and where it saturates.

    python -m bench batching [--levels 1,2,4,8,16,32] [--duration 15] [--warmup 3]

Serves the tiny SD3 and ChatTTS models twice on one local Ray cluster, one replica each: once
with batching (max_batch_size 4) and once without (max_batch_size 1), and drives each with the
load tool (`python -m bench loadtest`, closed loop) in a separate process. Also measures the
same runner in this process, one request at a time, to express saturated throughput as a
fraction of replicas x in-process throughput. Writes docs/bench/batching.json (+ the load tool's
own JSON and PNG per case).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import torch  # noqa: E402

from bench import report as rw  # noqa: E402
from bench.loadtest.payloads import Payloads  # noqa: E402
from bench.report import BENCH_DIR, ROOT  # noqa: E402
from bench.stack import local_stack  # noqa: E402
from deployments.common import with_resolved_paths  # noqa: E402
from graphs.app import build_app  # noqa: E402
from mmserve.config import BatchArgs, DeploymentArgs  # noqa: E402
from mmserve.config.app import AppArgs, load_app_args  # noqa: E402
from mmserve.media import encode_png  # noqa: E402
from mmserve.protocol.image import ImageRequest  # noqa: E402
from mmserve.protocol.tts import SpeechRequest  # noqa: E402
from mmserve.runners.chattts import TtsRunner  # noqa: E402
from mmserve.runners.sd3 import ImageRunner  # noqa: E402
from mmserve.tiny.catalog import build_all  # noqa: E402

OUT = BENCH_DIR
ROUTES = {"images": "image", "speech-whole": "tts"}  # load-tool route -> deployment
IMAGE_SIZE, IMAGE_STEPS = "128x128", 8


def app_args(batch_size: int) -> AppArgs:
    local = load_app_args(ROOT / "configs" / "local.yaml")
    args = AppArgs(models=[local.default_model("image"), local.default_model("tts")],
                   gateway=local.gateway.without_partials())
    for part in args.models:
        part.deployment = DeploymentArgs(num_cpus=0, num_replicas=1, max_ongoing_requests=32, max_queued_requests=-1)
        part.batch = BatchArgs(max_batch_size=batch_size, batch_wait_timeout_s=0.02 if batch_size > 1 else 0)
    return args


def in_process_rps(args: AppArgs, seconds: float = 15.0) -> dict[str, float]:
    """One request at a time through the runner itself, on the load tool's own payloads (cycled
    in the same order) and doing the replica's work (SD3 encodes PNGs): the per-replica baseline."""
    image = ImageRunner(with_resolved_paths(args.default_model("image")))
    tts = TtsRunner(with_resolved_paths(args.default_model("tts")))
    payloads = Payloads()
    width, height = (int(v) for v in IMAGE_SIZE.split("x"))

    def make_image(i: int) -> list[bytes]:
        request = ImageRequest(prompt=payloads.prompts[i % len(payloads.prompts)], width=width, height=height,
                               num_inference_steps=IMAGE_STEPS, seed=i)
        return [encode_png(img) for img in image.generate([request])[0]]

    calls = {
        "images": make_image,
        "speech-whole": lambda i: tts.synthesize([SpeechRequest(text=payloads.speech_text[i % len(payloads.speech_text)])]),
    }
    result = {}
    for route, call in calls.items():
        call(0)  # warm-up
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            call(n)
            n += 1
        result[route] = round(n / (time.perf_counter() - start), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,2,4,8,16,32")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--models", type=Path, default=None, help="tiny model root (default: a temp dir)")
    opts = parser.parse_args()

    from ray import serve

    models = opts.models or Path(tempfile.mkdtemp(prefix="mmserve-bench-"))
    build_all(models, ["sd3", "chattts"])
    os.environ["MMSERVE_MODEL_ROOT"] = str(models)
    torch.set_num_threads(1)  # as in replicas with num_cpus < 1 (Ray sets OMP_NUM_THREADS=1)
    baseline = in_process_rps(app_args(1))

    with local_stack(models) as stack:
        report = {"command": rw.command("batching"), "date": rw.now(), "cpus": os.cpu_count(),
                  "loadavg_start": os.getloadavg(), "in_process_rps": baseline, "cases": {}}
        for label, size in (("batch_on", 4), ("batch_off", 1)):
            serve.run(build_app(app_args(size)), name=label, route_prefix=f"/{label}")
            for route in ROUTES:
                out = OUT / f"batching-{label}-{route}.json"
                subprocess.run([sys.executable, "-m", "bench.loadtest", "--url", f"{stack.url}/{label}",
                                "--routes", route, "--sweep", opts.levels, "--duration", str(opts.duration),
                                "--warmup", str(opts.warmup), "--image-size", IMAGE_SIZE, "--steps", str(IMAGE_STEPS),
                                "--out", str(out)], cwd=ROOT, check=True)
                levels = json.loads(out.read_text())["levels"]
                rows = [{"concurrency": lv["users"], "rps": lv["routes"][route]["throughput_rps"],
                         "p50_ms": lv["routes"][route]["latency_ms"]["p50"],
                         "p99_ms": lv["routes"][route]["latency_ms"]["p99"],
                         "errors": sum(lv["routes"][route]["errors"].values())} for lv in levels]
                best = max(rows, key=lambda r: r["rps"])
                saturation = next(r for r in rows if r["rps"] >= 0.95 * best["rps"])
                report["cases"][f"{label}/{route}"] = {
                    "max_batch_size": size, "levels": rows, "saturation_concurrency": saturation["concurrency"],
                    "saturated_rps": best["rps"],
                    "fraction_of_in_process": round(best["rps"] / baseline[route], 3)}
            serve.delete(label)
        report["loadavg_end"] = os.getloadavg()
    rw.write(OUT / "batching.json", report, indent=2, newline=True)
    print(json.dumps({k: {x: v[x] for x in ("saturation_concurrency", "saturated_rps", "fraction_of_in_process")}
                      for k, v in report["cases"].items()}, indent=2))


if __name__ == "__main__":
    main()
