"""PNG of a report: per route, latency percentiles and throughput against concurrency (or rate),
plus replica counts over time when they were polled."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_report(report: dict, path: Path) -> Path:
    levels = report["levels"]
    routes = list(report["config"]["mix"])
    open_loop = report["config"]["mode"] == "open"
    xs = [lvl["rate"] if open_loop else lvl["users"] for lvl in levels]
    xlabel = "offered rate (req/s)" if open_loop else "concurrency (users)"
    replicas = report.get("replicas") or {}
    has_replicas = bool(replicas.get("samples"))
    rows = len(routes) + (1 if has_replicas else 0)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.0 * rows), squeeze=False)
    for row, name in enumerate(routes):
        lat_ax, thr_ax = axes[row]
        for p, style in (("p50", "o-"), ("p90", "s--"), ("p99", "^:")):
            ys = [(lvl["routes"][name]["latency_ms"] or {}).get(p, float("nan")) for lvl in levels]
            lat_ax.plot(xs, ys, style, label=p)
        if name == "realtime":  # the session's length is mostly the speech itself: show the turn's wait too
            for p, style in (("p50", "o-"), ("p95", "s--")):
                ys = [((lvl["routes"][name].get("after_speech_ms") or {}).get("first_audio_after_speech_ms")
                       or {}).get(p, float("nan")) for lvl in levels]
                lat_ax.plot(xs, ys, style, color="tab:red", label=f"first audio after speech {p}")
        lat_ax.set_title(f"{name}: latency")
        lat_ax.set_ylabel("ms")
        lat_ax.legend(fontsize=8)
        thr = [lvl["routes"][name]["throughput_rps"] for lvl in levels]
        thr_ax.plot(xs, thr, "o-", color="tab:green", label="req/s")
        if name in ("images", "speech-to-image"):
            thr_ax.plot(xs, [lvl["routes"][name].get("images_per_s", 0) for lvl in levels], "x--",
                        color="tab:olive", label="images/s")
        thr_ax.set_title(f"{name}: throughput")
        thr_ax.set_ylabel("per second")
        thr_ax.legend(fontsize=8)
        for ax in (lat_ax, thr_ax):
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            if len(set(xs)) > 2 and min(xs) > 0:
                ax.set_xscale("log", base=2)
    if has_replicas:
        ax = plt.subplot2grid((rows, 2), (rows - 1, 0), colspan=2, fig=fig)
        axes[rows - 1][0].remove()
        axes[rows - 1][1].remove()
        names = sorted({n for s in replicas["samples"] for n in s["deployments"]})
        ts = [s["t_s"] for s in replicas["samples"]]
        for n in names:
            ax.step(ts, [s["deployments"].get(n, {}).get("running", 0) for s in replicas["samples"]],
                    where="post", label=n)
        for lvl in levels:
            ax.axvspan(lvl["measure_start_s"], lvl["measure_end_s"], alpha=0.08, color="grey")
        ax.set_title("running replicas (shaded: measured windows)")
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("replicas")
        ax.set_ylim(bottom=0)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7, ncol=3)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{report['config']['url']}  {report['meta']['date']}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
