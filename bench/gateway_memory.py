"""Resident memory of a gateway replica with no models behind it, for the code in one or more trees.

The gateway decodes media and routes requests; it should not hold torch or a model library. This
starts a local Ray cluster per tree, deploys only the gateway (`Gateway(args, models, flows)` with no
models and no flows), and reads its replica's RSS.

    git worktree add /tmp/other <commit>     # a tree to compare with (its Gateway takes (args, models, flows))
    python -m bench gateway-memory /tmp/other . --out docs/bench/gateway-memory.json

Trees whose Gateway took `(args, models)` (before the flows argument; docs/bench/gateway-memory.json's
"old" figure was measured on one) are no longer measured by this tool.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from bench import report

# Runs in a fresh interpreter per tree, with that tree first on sys.path: its own gateway.ingress.
MEASURE = r'''
import subprocess, sys, urllib.request
root, port = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, root)
import ray
from ray import serve
ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
         runtime_env={"env_vars": {"PYTHONPATH": root, "HF_HUB_OFFLINE": "1"}})
serve.start(http_options={"host": "127.0.0.1", "port": port})
from gateway.ingress import Gateway
from mmserve.config.gateway import GatewayArgs
serve.run(Gateway.bind(GatewayArgs(), [], {}), name="gw", route_prefix="/")
assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200
for line in subprocess.check_output(["ps", "-eo", "rss,args"]).decode().splitlines():
    if "ServeReplica:gw:gateway" in line:
        print("RSS_KIB", line.split()[0])
serve.shutdown()
ray.shutdown()
'''


def replica_rss_mib(root: Path) -> float:
    from bench.stack import free_port

    out = subprocess.run([sys.executable, "-c", MEASURE, str(root.resolve()), str(free_port())], capture_output=True,
                         text=True, timeout=300, check=True, cwd=root).stdout
    return round(int(next(line.split()[1] for line in out.splitlines() if line.startswith("RSS_KIB"))) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench gateway-memory",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="PATH of a tree whose Gateway takes (args, models, flows)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    for path in args.trees:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=path).stdout.strip()
        results[f"{path} ({commit})"] = [replica_rss_mib(Path(path)) for _ in range(args.runs)]
        print(path, commit, results[f"{path} ({commit})"], "MiB")
    if args.out:
        record = {"command": report.command("gateway-memory"), "measured": time.strftime("%Y-%m-%d"),
                  "what": "RSS (MiB) of a gateway replica with no models, one value per run", "results": results}
        report.write(args.out, record, newline=True)


if __name__ == "__main__":
    main()
