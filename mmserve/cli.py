"""`mmserve`: the command a user reaches for first.

    mmserve run CONFIG [serve run options]   serve a config (Ray Serve's `serve run`, with the proxy guard)
    mmserve plan CONFIG [--gpu-memory-gb ..] check a config against GPU memory before anything starts
    mmserve build-tiny [--out DIR] [names]   build the tiny random-weight models (local run, tests)
    mmserve bench [NAME [args]]              benchmarks, load and fault drivers (`python -m bench`)

A launcher only: `run` and `bench` hand over to their own processes (exec), so this module imports
neither Ray nor the serving code.
"""

from __future__ import annotations

import os
import shutil
import sys

# Serve's proxy answers 503 + Retry-After, not 500, when a gateway replica dies mid-request; Ray reads
# it when it starts the proxy, so it must be in the environment of `serve run` (or of `ray start`).
PROXY_GUARD = {"RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": "gateway.proxy_guard:middlewares"}
USAGE = __doc__.split("\n\n")[1]


def run(argv: list[str]) -> int:
    """`serve run CONFIG ...` with the environment mmserve's gateway expects."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: mmserve run CONFIG [serve run options]  (e.g. configs/local.yaml; `serve run --help`)")
        return 0 if argv else 2
    serve = shutil.which("serve") or os.path.join(os.path.dirname(sys.executable), "serve")
    env = {**os.environ, **{key: os.environ.get(key, value) for key, value in PROXY_GUARD.items()}}
    os.execvpe(serve, [serve, "run", *argv], env)
    return 1  # not reached


def bench(argv: list[str]) -> int:
    os.execv(sys.executable, [sys.executable, "-m", "bench", *argv])
    return 1  # not reached


def plan(argv: list[str]) -> int:
    from mmserve.plan.__main__ import main as plan_main

    return plan_main(argv)


def build_tiny(argv: list[str]) -> int:
    from mmserve.tiny.__main__ import main as tiny_main

    tiny_main(argv)
    return 0


COMMANDS = {"run": run, "plan": plan, "build-tiny": build_tiny, "bench": bench}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage:\n" + USAGE)
        return 0 if argv else 2
    command = COMMANDS.get(argv[0])
    if command is None:
        print(f"mmserve: unknown command {argv[0]!r}\nusage:\n{USAGE}", file=sys.stderr)
        return 2
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
