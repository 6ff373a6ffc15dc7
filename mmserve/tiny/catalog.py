"""Build every tiny model into one folder tree, once: `<root>/<name>/`.

The tree is what `configs/local.yaml` and the tests point at. A folder counts as built only when
its marker file exists, so an interrupted build is redone rather than half-loaded.
"""

from __future__ import annotations

import importlib
import shutil
import time
from pathlib import Path

from mmserve.runners.registry import FAMILIES

# tiny model folder name -> module in mmserve.tiny whose build(out_dir) writes it: the families'
# declarations (`Family.tiny`), in registry order
BUILDERS = {name: module for family in FAMILIES.values() for name, module in family.tiny.items()}
MARKER = ".mmserve-built"


def build_one(name: str, root: Path, *, force: bool = False) -> Path:
    out = Path(root) / name
    if (out / MARKER).exists() and not force:
        return out
    if out.exists():
        shutil.rmtree(out)
    importlib.import_module(BUILDERS[name]).build(out)
    (out / MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return out


def build_all(root: Path, names: list[str] | None = None, *, force: bool = False) -> dict[str, Path]:
    return {name: build_one(name, root, force=force) for name in (names or list(BUILDERS))}
