"""Parameter counts from architecture configs, built on the meta device (no weights, no hub).

A config folder is counted the way its library builds it: transformers (`config.json` with
`architectures`), diffusers (`_class_name`, or a pipeline's `model_index.json`), FunASR
(`config.yaml`) or ChatTTS (`asset/gpt/config.json` plus the sizes ChatTTS hard-codes). Counts are
cached per folder: building T5-XXL on meta still costs a second.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ComponentSize:
    """One module's parameters, split by how quantization and dtype treat them."""

    name: str
    params: int
    linear_params: int  # nn.Linear weights: what bitsandbytes quantizes (output head excluded)
    fp32_params: int  # kept in float32 whatever the dtype (the library's _keep_in_fp32_modules)


class NotSizable(Exception):
    """The folder holds no config the planner knows how to build."""


def _count(name: str, model) -> ComponentSize:
    import torch

    keep_fp32 = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    output_head = getattr(model, "get_output_embeddings", lambda: None)()
    linear = fp32 = 0
    for module_name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if keep_fp32 and any(part in keep_fp32 for part in module_name.split(".")):
            fp32 += own
        elif isinstance(module, torch.nn.Linear) and module is not output_head:
            linear += module.weight.numel()
    total = sum(p.numel() for p in model.parameters())  # shared (tied) parameters count once
    return ComponentSize(name, total, linear, fp32)


def _on_meta(include_buffers: bool = True):
    from accelerate import init_empty_weights

    return init_empty_weights(include_buffers=include_buffers)


def _transformers_model(folder: Path):
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    arch = (config.architectures or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        cls = transformers.AutoModel
        return cls.from_config(config)
    return cls._from_config(config)


def _diffusers_model(folder: Path, class_name: str, library: str = "diffusers"):
    import importlib

    import diffusers

    cls = getattr(diffusers, class_name, None)
    if cls is None:
        cls = getattr(importlib.import_module(f"diffusers.pipelines.{library}"), class_name)
    return cls.from_config(cls.load_config(folder))


def _config_json_component(name: str, folder: Path) -> ComponentSize:
    config = json.loads((folder / "config.json").read_text())
    with _on_meta():
        if "_class_name" in config:
            model = _diffusers_model(folder, config["_class_name"])
        else:
            model = _transformers_model(folder)
    return _count(name, model)


def _pipeline(folder: Path) -> list[ComponentSize]:
    index = json.loads((folder / "model_index.json").read_text())
    parts = []
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or not (folder / name / "config.json").exists():
            continue
        library, class_name = spec
        if library == "transformers":
            parts.append(_config_json_component(name, folder / name))
        else:
            with _on_meta():
                parts.append(_count(name, _diffusers_model(folder / name, class_name, library)))
    return parts


def _funasr(folder: Path, vocab_size: int | None) -> list[ComponentSize]:
    import torch
    import yaml

    with contextlib.redirect_stdout(io.StringIO()):  # funasr prints an ffmpeg notice on import
        import funasr  # noqa: F401  (registers the model classes)
        from funasr.register import tables

    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    tokens = folder / "tokens.json"
    if tokens.exists():
        vocab_size = len(json.loads(tokens.read_text(encoding="utf-8")))
    kwargs = {**cfg.get("model_conf", {}), **cfg, "vocab_size": vocab_size or -1}
    frontend = cfg.get("frontend_conf", {})
    kwargs["input_size"] = frontend.get("n_mels", 80) * frontend.get("lfr_m", 1)
    kwargs["frontend"] = None
    with torch.device("meta"):
        model = tables.model_classes.get(cfg["model"])(**kwargs)
    return [_count(cfg["model"], model)]


def _chattts(folder: Path) -> list[ComponentSize]:
    from dataclasses import asdict

    from ChatTTS.config import Config
    from ChatTTS.model import DVAE, Embed
    from vocos import Vocos
    from vocos.pretrained import instantiate_class

    gpt = _config_json_component("gpt", folder / "asset" / "gpt")
    # ChatTTS deletes the Llama body's token embedding and embeds with its own Embed module.
    gpt_config = json.loads((folder / "asset" / "gpt" / "config.json").read_text())
    embed_tokens = gpt_config["vocab_size"] * gpt_config["hidden_size"]
    parts = [ComponentSize("gpt", gpt.params - embed_tokens, gpt.linear_params, 0)]
    c = Config()
    with _on_meta(include_buffers=False):  # DVAE computes mel filter banks at init
        builds = {
            "embed": lambda: Embed(c.embed.hidden_size, c.embed.num_audio_tokens, c.embed.num_text_tokens, c.embed.num_vq),
            "dvae": lambda: DVAE(decoder_config=asdict(c.dvae.decoder), encoder_config=asdict(c.dvae.encoder),
                                 vq_config=asdict(c.dvae.vq), dim=c.dvae.decoder.idim),
            "decoder": lambda: DVAE(decoder_config=asdict(c.decoder), dim=c.decoder.idim),
            "vocos": lambda: Vocos(feature_extractor=instantiate_class(args=(), init=asdict(c.vocos.feature_extractor)),
                                   backbone=instantiate_class(args=(), init=asdict(c.vocos.backbone)),
                                   head=instantiate_class(args=(), init=asdict(c.vocos.head))),
        }
        parts += [_count(name, build()) for name, build in builds.items()]
    return parts


def config_digest(folder: Path) -> str:
    """Hash of a folder's config files: the shipped counts are valid while this matches."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(folder.rglob("*")):
        if file.suffix in (".json", ".yaml") and file.is_file():
            digest.update(str(file.relative_to(folder)).encode() + file.read_bytes())
    return digest.hexdigest()[:16]


def _shipped_counts(root: Path) -> tuple[ComponentSize, ...] | None:
    """Counts stored in model_configs/param_counts.json, so `serve run` need not import diffusers,
    funasr or ChatTTS, nor build T5-XXL on meta (16 s together); tests keep the file current."""
    from mmserve import model_configs

    if root.parent != model_configs.ROOT or not model_configs.COUNTS_FILE.exists():
        return None
    entry = json.loads(model_configs.COUNTS_FILE.read_text()).get(root.name)
    if not entry or entry["digest"] != config_digest(root):
        return None
    return tuple(ComponentSize(**part) for part in entry["components"])


def write_shipped_counts() -> dict:
    """Rebuild model_configs/param_counts.json from the shipped configs (on meta)."""
    from dataclasses import asdict

    from mmserve import model_configs

    counts = {}
    for key in model_configs.keys():
        folder = model_configs.path(key)
        parts = build_component_sizes(folder, model_configs.VOCAB_SIZES.get(key))
        counts[key] = {"digest": config_digest(folder), "components": [asdict(p) for p in parts]}
    model_configs.COUNTS_FILE.write_text(json.dumps(counts, indent=1) + "\n")
    return counts


@lru_cache(maxsize=64)
def component_sizes(folder: str, vocab_size: int | None = None) -> tuple[ComponentSize, ...]:
    """Sizes of every weighted component in a model folder; raises NotSizable when none is known."""
    return _shipped_counts(Path(folder)) or build_component_sizes(Path(folder), vocab_size)


def build_component_sizes(root: Path, vocab_size: int | None = None) -> tuple[ComponentSize, ...]:
    if (root / "model_index.json").exists():
        return tuple(_pipeline(root))
    if (root / "asset" / "gpt" / "config.json").exists():
        return tuple(_chattts(root))
    if (root / "config.yaml").exists():
        return tuple(_funasr(root, vocab_size))
    if (root / "config.json").exists():
        return (_config_json_component(root.name, root),)
    raise NotSizable(f"{root}: no config.json, config.yaml or model_index.json")


if __name__ == "__main__":
    for key, entry in write_shipped_counts().items():
        print(key, sum(part["params"] for part in entry["components"]))
