"""The planner's text report: per model, then per node, then errors and warnings."""

from __future__ import annotations

from mmserve.devices import CUDA_CONTEXT_GB
from mmserve.plan.check import Plan


def render(plan: Plan) -> str:
    c = plan.cluster
    lines = [f"cluster: {c.nodes} node(s) x {c.gpus_per_node} GPU(s) x {c.gpu_memory_gb:g} GB "
             f"(decimal GB; each replica also holds a {CUDA_CONTEXT_GB} GB CUDA context inside its share)"]
    if not plan.models:
        lines.append("no model has a GPU share (num_gpus 0 everywhere): nothing to place on GPUs")
    else:
        width = max(len(m.name) for m in plan.models) + 2
        lines.append(f"{'model':<{width}}{'task':<7}{'share':>7}{'cap GB':>8}{'weights':>9}{'act/KV':>8}"
                     f"{'headroom':>10}{'replicas':>10}")
        for m in plan.models:
            e = m.estimate
            weights = "unknown" if e.weights_gb is None else f"{e.weights_gb:.2f}"
            headroom = "-" if m.headroom_gb is None else f"{m.headroom_gb:.2f}"
            kv = f"{e.activation_gb:.2f}" + ("+" if e.kv_fills_share else "")
            lines.append(f"{m.name:<{width}}{m.task:<7}{m.num_gpus:>7.2f}{m.cap_gb:>8.1f}{weights:>9}{kv:>8}{headroom:>10}"
                         f"{f'{m.min_replicas}-{m.max_replicas}':>10}")
        lines.append("assumptions (act/KV '+': lmdeploy's KV cache also takes the headroom at replica start):")
        lines += [f"  {m.name} ({m.task}): {m.estimate.assumption}" for m in plan.models]
        low = sum(m.num_gpus * m.min_replicas for m in plan.models)
        high = sum(m.num_gpus * m.max_replicas for m in plan.models)
        lines.append(f"sum of GPU fractions: {low:.2f} at min replicas, {high:.2f} at max replicas, "
                     f"on {c.total_gpus} GPU(s)")
        lines += plan.placement
    if plan.cpu_only:
        lines.append(f"on CPU (num_gpus 0): {', '.join(plan.cpu_only)}")
    lines += [f"ERROR: {e}" for e in plan.errors] + [f"WARNING: {w}" for w in plan.warnings]
    lines.append("plan: " + ("OK" if plan.ok else "DOES NOT FIT") +
                 (f" with {len(plan.warnings)} warning(s)" if plan.warnings else ""))
    return "\n".join(lines)
