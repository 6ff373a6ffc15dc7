"""GPU capacity planner: `python -m mmserve.plan CONFIG` checks a Serve config against GPU memory.

`check_app_args` is what `graphs.app.build_app` runs at `serve run`. Importing this package is
cheap (pydantic only); sizing models imports torch, transformers and diffusers on first use.
"""

from __future__ import annotations

from mmserve.plan.placement import ClusterArgs

__all__ = ["ClusterArgs", "PlanError", "check_app_args", "plan_app"]


class PlanError(ValueError):
    """The config cannot run on its cluster: a model over its share or a minimum set that does not pack."""


def plan_app(args, cluster: ClusterArgs):
    from mmserve.plan.check import plan_app as _plan

    return _plan(args, cluster)


def check_app_args(args, cluster: ClusterArgs, warn=print):
    """Raise PlanError on errors, pass warnings to `warn`; returns the plan."""
    plan = plan_app(args, cluster)
    for warning in plan.warnings:
        warn(warning)
    if plan.errors:
        raise PlanError("GPU plan for " + _cluster_text(cluster) + " fails:\n- " + "\n- ".join(plan.errors))
    return plan


def _cluster_text(cluster: ClusterArgs) -> str:
    return f"{cluster.nodes} node(s) x {cluster.gpus_per_node} GPU(s) x {cluster.gpu_memory_gb:g} GB"
