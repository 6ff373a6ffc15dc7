"""`mmserve plan CONFIG` (or `python -m mmserve.plan CONFIG`) [--gpu-memory-gb 80] [--gpus-per-node 1] [--nodes 1] [--app mmserve]`

Exit 0 when every model fits and the minimum replica set packs (warnings allowed), 1 otherwise.
The cluster comes from the config's `cluster:` section; flags override it.
"""

from __future__ import annotations

import argparse
import sys

from mmserve.plan import ClusterArgs, plan_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mmserve plan", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--gpu-memory-gb", type=float)
    parser.add_argument("--gpus-per-node", type=int)
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--app", default="mmserve", help="application name in the Serve config")
    opts = parser.parse_args(argv)

    from mmserve.config.app import load_app_args
    from mmserve.plan.report import render

    args = load_app_args(opts.config, opts.app)
    overrides = {"gpu_memory_gb": opts.gpu_memory_gb, "gpus_per_node": opts.gpus_per_node, "nodes": opts.nodes}
    base = args.cluster or ClusterArgs()
    cluster = base.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    plan = plan_app(args, ClusterArgs.model_validate(cluster.model_dump()))
    print(render(plan))
    return 0 if plan.ok else 1


if __name__ == "__main__":
    sys.exit(main())
