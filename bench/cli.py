"""`python -m bench`: list the benchmarks and drivers, or run one by name.

`main(argv)` is what a console script calls. Each command is a module of this package with a
`main()` of its own, also runnable as `python -m bench.<module>`.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module, one line). Order: what is recorded in docs/bench/, then the drivers and tools.
COMMANDS: dict[str, tuple[str, str]] = {
    "overhead": ("bench.overhead", "each flow over HTTP vs the same runners in process -> overhead.json"),
    "batching": ("bench.batching", "@serve.batch on vs off against concurrency -> batching.json"),
    "autoscaling": ("bench.autoscaling", "replicas up and down under a load step -> autoscaling.json"),
    "overload": ("bench.overload", "503s and accepted latency at 3x capacity -> overload.json"),
    "voice": ("bench.voice", "time to first audio, voice chat and /v1/realtime -> voice.json (+ 'gpu')"),
    "streaming-state": ("bench.streaming_state", "a live turn's streaming state (bytes) and chunk time on "
                        "the online Paraformer-large architecture -> streaming-state.json"),
    "gateway-memory": ("bench.gateway_memory", "RSS of a gateway replica with no models, per tree "
                       "-> gateway-memory.json"),
    "chaos": ("bench.chaos", "SIGKILL replicas, a node, the controller under load on 3 nodes -> chaos.json"),
    "soak": ("bench.soak", "minutes to hours of mixed load: errors, RSS drift, object store -> soak.json"),
    "rolling-update": ("bench.rolling_update", "serve deploy of changed configs under load, 0 failures "
                       "-> rolling-update.json"),
    "loadtest": ("bench.loadtest.__main__", "the load tool: any routes, closed/open loop, sweeps -> JSON + PNG"),
    "cluster": ("bench.cluster", "start a head + worker nodes on this machine and wait (Ctrl-C stops it)"),
    "gpu-bench": ("bench.gpu.bench", "runner-level GPU benchmarks on random real-size weights "
                  "(bash bench/gpu/check.sh runs them)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m bench NAME [args]    (python -m bench NAME --help: its options)",
             "", "benchmarks and drivers (JSON into docs/bench/ unless --out says otherwise):"]
    lines += [f"  {name:<{width}}  {line}" for name, (_, line) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help", "list"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    # The command's own argparse reads sys.argv and records it (report.command): show it its arguments.
    sys.argv = [f"python -m bench {name}", *rest]
    result = module.main()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
