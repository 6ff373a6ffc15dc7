"""Resident memory of a gateway replica with no models behind it, for the code in one or more trees.

The gateway decodes media and routes requests; it should not hold torch or a model library. This
starts a local Ray cluster per tree, deploys only the gateway, and reads its replica's RSS.

    git worktree add /tmp/before 050dcfb     # the tree to compare with (its Gateway takes (args, models))
    python scripts/bench_gateway_memory.py /tmp/before:old .:new --out docs/bench/gateway-memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MEASURE = r'''
import subprocess, sys, urllib.request
root, style = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
import ray
from ray import serve
ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
         runtime_env={"env_vars": {"PYTHONPATH": root, "HF_HUB_OFFLINE": "1"}})
serve.start(http_options={"host": "127.0.0.1", "port": 18123})
from graphs.gateway import Gateway, GatewayArgs
serve.run(Gateway.bind(GatewayArgs(), {}) if style == "old" else Gateway.bind(GatewayArgs(), [], {}),
          name="gw", route_prefix="/")
assert urllib.request.urlopen("http://127.0.0.1:18123/healthz").status == 200
for line in subprocess.check_output(["ps", "-eo", "rss,args"]).decode().splitlines():
    if "ServeReplica:gw:gateway" in line:
        print("RSS_KIB", line.split()[0])
serve.shutdown()
ray.shutdown()
'''


def replica_rss_mib(root: Path, style: str) -> float:
    out = subprocess.run([sys.executable, "-c", MEASURE, str(root.resolve()), style], capture_output=True,
                         text=True, timeout=300, check=True, cwd=root).stdout
    return round(int(next(line.split()[1] for line in out.splitlines() if line.startswith("RSS_KIB"))) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="PATH:old|new (old: Gateway(args, models); new: (args, models, flows))")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    results = {}
    for spec in args.trees:
        path, style = spec.rsplit(":", 1)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=path).stdout.strip()
        results[f"{path} ({commit})"] = [replica_rss_mib(Path(path), style) for _ in range(args.runs)]
        print(spec, commit, results[f"{path} ({commit})"], "MiB")
    if args.out:
        record = {"command": "python " + " ".join(sys.argv), "measured": time.strftime("%Y-%m-%d"),
                  "what": "RSS (MiB) of a gateway replica with no models, one value per run", "results": results}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
