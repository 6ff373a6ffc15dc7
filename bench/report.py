"""The one percentile/report writer: percentiles of a list of figures, and the JSON record every
benchmark leaves in docs/bench/ (the command that made it, the date, the machine and its load average).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "docs" / "bench"


def percentile(values, q: float, method: str = "linear") -> float:
    """numpy's percentile `q` (0-100); `method` as numpy names it ("linear", "nearest", "higher")."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q, method=method))


def percentiles(values, points=(50, 90, 99), method: str = "linear", extra=("mean", "min", "max"),
                scale: float = 1.0, digits: int = 3) -> dict[str, float] | None:
    """{"p50": ..., "p90": ..., "p99": ..., "mean", "min", "max"} of `values` times `scale`, rounded;
    None for no values. `extra` picks from mean, min, max and n (the count)."""
    if len(values) == 0:
        return None
    import numpy as np

    arr = np.asarray(values, dtype=float) * scale
    out = {f"p{p:g}": round(float(np.percentile(arr, p, method=method)), digits) for p in points}
    stats = {"mean": lambda: round(float(arr.mean()), digits), "min": lambda: round(float(arr.min()), digits),
             "max": lambda: round(float(arr.max()), digits), "n": lambda: len(arr)}
    out.update({k: stats[k]() for k in extra})
    return out


def command(name: str, argv: list[str] | None = None) -> str:
    """How this run is repeated: `python -m bench NAME ARGS`."""
    return " ".join(["python -m bench", name, *(sys.argv[1:] if argv is None else argv)])


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine(**extra) -> dict:
    """platform, python, cpus and the CPU model, plus `extra`."""
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu_model": model, **extra}


def write(path: Path, report: dict, indent: int = 1, newline: bool = False) -> Path:
    """The report as JSON (UTF-8 kept as is) at `path`, its folder made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=indent, ensure_ascii=False) + ("\n" if newline else ""))
    return path
