"""Load-test the mmserve HTTP API; write a JSON report and a PNG plot.

    python -m bench loadtest --url http://127.0.0.1:8000 --routes auto \
        --sweep 1,2,4,8,16,32 --duration 30 --warmup 5 --out docs/bench/load.json [--replicas]

Closed loop by default (N users, no wait); `--rate R` (or `--sweep` with `--open-loop`) offers a
fixed request rate instead. `--routes auto` loads every known route the gateway's /openapi.json
lists; `--routes speech-to-image:3,healthz` picks routes and weights. `--routes realtime` (a
WebSocket, never in `auto`) makes each user speak one turn per session over /v1/realtime; its
figures are timed from the end of the user's speech (`after_speech_ms` in the report).
"""

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import locust  # noqa: F401  first: it monkeypatches the standard library with gevent
import requests  # noqa: E402

from bench.loadtest.locustfile import Level, run_level  # noqa: E402
from bench.loadtest.payloads import Payloads  # noqa: E402
from bench.loadtest.replicas import ReplicaPoller  # noqa: E402
from bench.loadtest.report import summarize_level  # noqa: E402
from bench.loadtest.routes import Options, parse_mix  # noqa: E402
from bench.loadtest.safety import check_loopback  # noqa: E402
from bench.report import loadavg, machine, now, write  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench loadtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="gateway base URL (loopback only), may include a route prefix")
    p.add_argument("--routes", default="auto", help="auto | all | name[:weight],... (see routes.py)")
    p.add_argument("--users", type=int, default=None, help="closed loop: concurrency; open loop: sender pool (default 64)")
    p.add_argument("--rate", type=float, default=None, help="open loop: offered requests/s for the whole mix")
    p.add_argument("--open-loop", action="store_true", help="--sweep values are rates, not user counts")
    p.add_argument("--poisson", action="store_true", help="open loop: Poisson arrivals instead of evenly spaced")
    p.add_argument("--sweep", default=None, help="comma-separated levels run one after another, e.g. 1,2,4,8")
    p.add_argument("--duration", type=float, default=30.0, help="measured seconds per level")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the stats are reset")
    p.add_argument("--max-requests", type=int, default=None, help="end a level after this many measured requests")
    p.add_argument("--drain", type=float, default=60.0, help="seconds in-flight requests may take to finish")
    p.add_argument("--out", type=Path, default=Path("loadtest.json"), help="JSON report")
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: the JSON path with .png)")
    p.add_argument("--raw", action="store_true", help="also store every measured latency")
    p.add_argument("--replicas", action="store_true", help="poll Serve replica counts during the run")
    p.add_argument("--dashboard", default="http://127.0.0.1:8265", help="Ray dashboard (Serve REST API)")
    p.add_argument("--replicas-interval", type=float, default=2.0)
    p.add_argument("--api-key", default=os.environ.get("MMSERVE_API_KEY"), help="Bearer key (or $MMSERVE_API_KEY)")
    p.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, seconds")
    p.add_argument("--audio", default="zh,en,10s", help="speech clips: zh, en, <N>s (joined to N seconds)")
    p.add_argument("--image-size", default="128x128")
    p.add_argument("--steps", type=int, default=None, help="denoising steps for image/music routes")
    p.add_argument("--n", type=int, default=1, help="images per image request")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--music-seconds", type=float, default=2.0)
    p.add_argument("--rewrite", choices=["true", "false"], default=None, help="speech-to-image: LLM prompt rewrite")
    p.add_argument("--voice", default=None)
    p.add_argument("--realtime-silence-ms", type=int, default=500,
                   help="realtime: server_vad silence_duration_ms (counts in its time to first audio)")
    p.add_argument("--realtime-chunk-ms", type=int, default=40, help="realtime: audio per append, 20-100 ms")
    p.add_argument("--realtime-clip", default="en", choices=["en", "zh"], help="realtime: the recording spoken")
    p.add_argument("--realtime-model", default=None, help="realtime: ?model= (the LLM; default the flow's)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not 20 <= args.realtime_chunk_ms <= 100:
        p.error("--realtime-chunk-ms must be 20-100")
    if args.rate is not None and args.sweep is not None:
        p.error("--rate and --sweep are exclusive; use --open-loop --sweep R1,R2 for a rate sweep")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        url = check_loopback(args.url)
    except ValueError as exc:
        sys.exit(str(exc))
    try:
        auth = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        requests.get(url + "/healthz", headers=auth, timeout=10).raise_for_status()
        mix = parse_mix(args.routes, url, args.api_key)
    except (ValueError, requests.RequestException) as exc:
        sys.exit(f"cannot start a load test against {url}: {exc}")
    open_loop = args.rate is not None or args.open_loop
    values = [float(v) for v in args.sweep.split(",")] if args.sweep else [args.rate if open_loop else (args.users or 1)]
    options = Options(timeout_s=args.timeout, api_key=args.api_key, image_size=args.image_size, steps=args.steps,
                      n=args.n, max_tokens=args.max_tokens, music_seconds=args.music_seconds,
                      rewrite=None if args.rewrite is None else args.rewrite == "true", voice=args.voice,
                      realtime_silence_ms=args.realtime_silence_ms, realtime_chunk_ms=args.realtime_chunk_ms,
                      realtime_clip=args.realtime_clip, realtime_model=args.realtime_model)
    payloads = Payloads(args.audio.split(","))
    origin = time.perf_counter()
    poller = None
    if args.replicas:
        poller = ReplicaPoller(args.dashboard, origin, args.replicas_interval)
        poller_greenlet = gevent.spawn(poller.loop, gevent.sleep)
    report = {
        "tool": "bench.loadtest", "format": 1,
        "meta": {"date": now(), "machine": machine(locust=locust.__version__), "argv": sys.argv[1:]},
        "config": {"url": url, "mode": "open" if open_loop else "closed", "mix": mix,
                   "duration_s": args.duration, "warmup_s": args.warmup, "levels": values,
                   "audio_clips": {c.name: round(c.seconds, 3) for c in payloads.clips},
                   "options": {k: v for k, v in vars(options).items() if k != "api_key"}},
        "levels": [],
    }
    for value in values:
        users = int(value) if not open_loop else (args.users or 64)
        level = Level(users=users, rate=value if open_loop else None, warmup_s=args.warmup,
                      duration_s=args.duration, max_requests=args.max_requests, drain_s=args.drain,
                      poisson=args.poisson, seed=args.seed)
        load_before = loadavg()
        result = run_level(url, mix, payloads, options, level)
        summary = summarize_level(result, mix, raw=args.raw)
        summary = {"users": users, "rate": level.rate,
                   "measure_start_s": round(result["t0"] - origin, 3), "measure_end_s": round(result["t1"] - origin, 3),
                   "loadavg_before": load_before,
                   "loadavg_after": loadavg(), **summary}
        if poller:
            poller.poll_once()
            summary["replicas_max"] = poller.max_running(summary["measure_start_s"] - args.warmup,
                                                         summary["measure_end_s"] + 1)
        report["levels"].append(summary)
        print(one_line(summary), flush=True)
    if poller:
        poller.running = False
        poller_greenlet.kill()
        report["replicas"] = poller.report()
    write(args.out, report)
    from bench.loadtest.plot import plot_report

    png = plot_report(report, args.plot or args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {png}", flush=True)
    if not any(level["totals"]["ok"] for level in report["levels"]):
        print("no request succeeded", file=sys.stderr)
        return 3
    return 0


def one_line(level: dict) -> str:
    head = f"rate={level['rate']}/s" if level["rate"] is not None else f"users={level['users']}"
    parts = []
    for name, r in level["routes"].items():
        lat = r["latency_ms"] or {}
        parts.append(f"{name}: n={r['requests']} err={sum(r['errors'].values())} {r['throughput_rps']:.2f}/s "
                     f"p50={lat.get('p50', float('nan')):.0f} p99={lat.get('p99', float('nan')):.0f} ms")
    return f"[{head}] " + " | ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
