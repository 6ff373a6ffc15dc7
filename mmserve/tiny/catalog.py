"""Build every tiny model into one folder tree, once: `<root>/<name>/`.

The tree is what `configs/local.yaml` and the tests point at. A folder counts as built only when
its marker file exists, so an interrupted build is redone rather than half-loaded.
"""

from __future__ import annotations

import importlib
import shutil
import time
from pathlib import Path

# name -> module in mmserve.tiny whose build(out_dir) writes the folder
BUILDERS = {
    "funasr": "mmserve.tiny.funasr",
    "sd3": "mmserve.tiny.sd3",
    "qwen": "mmserve.tiny.qwen",
    "qwen_lora": "mmserve.tiny.lora",  # LoRA adapters of the tiny qwen (built after it)
    "chattts": "mmserve.tiny.chattts",
    "internvl": "mmserve.tiny.internvl",
    "llava": "mmserve.tiny.llava",
    "stable_audio": "mmserve.tiny.stable_audio",
    "whisper-tiny-en": "mmserve.tiny.whisper",  # real weights, linked from a package
}
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
