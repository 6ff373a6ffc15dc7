"""The plan of one app config: does each model fit its share, and can the replicas be scheduled?

Errors (a model over its share, a minimum replica set that does not pack) make `serve run` refuse
the config and the CLI exit 1. Scaling limits are warnings, and so is a model the planner cannot
size (no shipped or local config): swapping in another model must stay a YAML change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmserve.config import DeploymentArgs
from mmserve.devices import CUDA_CONTEXT_GB
from mmserve.plan.placement import EPS, ClusterArgs, pack, place
from mmserve.sizing.estimates import ModelEstimate, unknown


@dataclass
class ModelPlan:
    name: str
    task: str
    num_gpus: float
    min_replicas: int
    max_replicas: int
    estimate: ModelEstimate
    cap_gb: float

    @property
    def headroom_gb(self) -> float | None:
        need = self.estimate.need_gb
        return None if need is None else self.cap_gb - need


@dataclass
class Plan:
    cluster: ClusterArgs
    models: list[ModelPlan] = field(default_factory=list)
    cpu_only: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    placement: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def replica_bounds(deployment: DeploymentArgs) -> tuple[int, int]:
    scaling = deployment.autoscaling
    if scaling is None:
        return deployment.num_replicas, deployment.num_replicas
    return scaling.min_replicas, scaling.max_replicas


def estimate(model, image_side: int) -> ModelEstimate:
    """The model's memory estimate from its family (`Family.estimate`); a family without one is
    planned as "cannot be sized" (a warning)."""
    estimator = model.family.estimate
    if estimator is None:
        return unknown(model, f"the planner has no estimator for family {model.family.name!r}")
    return estimator(model, image_side)


def plan_app(args, cluster: ClusterArgs) -> Plan:
    """Check an AppArgs against a cluster; models with num_gpus 0 are not placed on GPUs."""
    plan = Plan(cluster)
    side = args.gateway.limits.max_image_side
    for model in args.models:
        deployment = model.deployment
        if deployment.num_gpus <= 0:
            plan.cpu_only.append(model.name)
            continue
        low, high = replica_bounds(deployment)
        cap = deployment.num_gpus * cluster.gpu_memory_gb
        plan.models.append(
            ModelPlan(model.name, model.task, deployment.num_gpus, low, high, estimate(model, side), cap))
    for model in plan.models:
        _check_fit(plan, model)
    if plan.models:
        _check_placement(plan)
    return plan


def _check_fit(plan: Plan, model: ModelPlan) -> None:
    est = model.estimate
    label = f"{model.name} ({model.task}, {est.model})"
    if est.weights_gb is None:
        plan.warnings.append(f"{label} has a GPU share ({model.num_gpus:g}) but cannot be sized, so its memory "
                             f"is not checked: {est.assumption}")
        return
    if model.num_gpus > 1 and abs(model.num_gpus - round(model.num_gpus)) > EPS:
        plan.errors.append(f"{label}: num_gpus {model.num_gpus:g} above 1 must be a whole number for Ray")
    if model.headroom_gb < 0:
        plan.errors.append(
            f"{label} does not fit its share: needs {est.need_gb:.1f} GB (weights {est.weights_gb:.1f} + "
            f"activations/KV {est.activation_gb:.1f} + CUDA context {CUDA_CONTEXT_GB}) but num_gpus "
            f"{model.num_gpus:g} x {plan.cluster.gpu_memory_gb:g} GB = {model.cap_gb:.1f} GB")
    plan.warnings += [f"{label}: {note}" for note in est.notes]


def _replicas(models: list[ModelPlan], counts: dict[str, int]) -> list[tuple[str, float]]:
    return [(m.name, m.num_gpus) for m in models for _ in range(counts[m.name])]


def _check_placement(plan: Plan) -> None:
    cluster, models = plan.cluster, plan.models
    at_min = {m.name: m.min_replicas for m in models}
    at_max = {m.name: m.max_replicas for m in models}
    gpus = f"{cluster.nodes} node(s) x {cluster.gpus_per_node} GPU(s)"
    free, unplaced = pack(_replicas(models, at_min), cluster)
    if unplaced:
        terms = " + ".join(f"{m.name} {m.min_replicas}x{m.num_gpus:g}" for m in models if m.min_replicas)
        plan.errors.append(
            f"the minimum replica set does not fit on {gpus}: {terms} = "
            f"{sum(m.min_replicas * m.num_gpus for m in models):.2f} GPU; left over: {', '.join(unplaced)}")
    plan.placement.append(_fill_line("at min replicas", free))
    free_max, unplaced_max = pack(_replicas(models, at_max), cluster)
    plan.placement.append(_fill_line("at max replicas", free_max))
    if unplaced_max:
        plan.warnings.append(
            f"with every model at max_replicas ({sum(m.max_replicas * m.num_gpus for m in models):.2f} GPU) "
            f"{len(unplaced_max)} replica(s) cannot be placed on {gpus}: {', '.join(sorted(unplaced_max))}")
    for model in models:
        _check_scale_up(plan, model, at_min)
        if model.min_replicas == 0:
            _check_comeback(plan, model, at_max)


def _check_scale_up(plan: Plan, model: ModelPlan, at_min: dict[str, int]) -> None:
    """The largest replica count this model can reach with every other model at its minimum."""
    reachable = model.min_replicas
    for count in range(model.min_replicas + 1, model.max_replicas + 1):
        if pack(_replicas(plan.models, {**at_min, model.name: count}), plan.cluster)[1]:
            break
        reachable = count
    if reachable < model.max_replicas:
        plan.warnings.append(
            f"{model.name} cannot scale to max_replicas {model.max_replicas}: at most {reachable} replica(s) of "
            f"{model.num_gpus:g} GPU fit beside the other models' minimum replicas")


def _check_comeback(plan: Plan, model: ModelPlan, at_max: dict[str, int]) -> None:
    """A scale-to-zero model must find room for one replica while every other model is at its max."""
    others = {**at_max, model.name: 0}
    free, _ = pack(_replicas(plan.models, others), plan.cluster)
    if not place(free, model.num_gpus):
        plan.warnings.append(
            f"{model.name} scales to zero and may not come back: with the other models at max_replicas no GPU "
            f"has {model.num_gpus:g} free (largest free share {max(f for node in free for f in node):.2f})")


def _fill_line(label: str, free: list[list[float]]) -> str:
    nodes = "; ".join(f"node {n}: " + " ".join(f"{1 - f:.2f}" for f in node) for n, node in enumerate(free))
    return f"GPU fractions used {label}: {nodes}"
