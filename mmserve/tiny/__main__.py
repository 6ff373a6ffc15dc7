"""Build the tiny random-weight models used by the local run and the tests.

    mmserve build-tiny --out .models [--force] [names...]   (or python -m mmserve.tiny ...)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mmserve.tiny.catalog import BUILDERS, build_all  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mmserve build-tiny", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(".models"))
    parser.add_argument("--force", action="store_true", help="rebuild folders that already exist")
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(BUILDERS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BUILDERS)
    if unknown:
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    start = time.perf_counter()
    for name, path in build_all(args.out, args.names or None, force=args.force).items():
        print(f"{name}: {path}")
    print(f"built in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
