"""Architecture configs of the default production models, shipped with the package.

No model hub is reachable from CI or from the capacity planner, yet both need the real sizes:
the planner counts parameters from these configs (built on the meta device). Each family names the
ones it ships (`Family.shipped`: hub id -> folder here), and benchmarks
build real-size random-weight models from them. Each folder is laid out like its hub repo, so
`from_pretrained` / `from_config` read it directly, e.g.
`SD3Transformer2DModel.from_config(SD3Transformer2DModel.load_config(path("sd3-medium") / "transformer"))`.

Differences from the hub repos (weights, tokenizers and processors are never shipped):
- `internvl2.5-4b` is the HF-native `InternVLConfig` (`InternVLForConditionalGeneration`, the
  layout of `OpenGVLab/InternVL3-*-hf`) with InternVL2.5-4B's dimensions (InternViT-300M-448px-V2_5
  + Qwen2.5-3B, untied head, vocab 151674): transformers instantiates it without remote code.
- `paraformer-large` / `fsmn-vad` hold FunASR's `config.yaml` only (no tokens.json, am.mvn);
  the ASR vocabulary size is `VOCAB_SIZES`. The CT-Transformer punctuation model is not shipped:
  no verifiable copy of its config was found, so the planner reports it as not sized.
- `chattts` holds the GPT body's config (`asset/gpt/config.json`); ChatTTS hard-codes its other
  components' sizes in `ChatTTS.config.Config`.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).parent
COUNTS_FILE = ROOT / "param_counts.json"  # parameter counts of these configs (mmserve.sizing.params)

# FunASR models size their output layer from tokens.json, which is not shipped.
VOCAB_SIZES: dict[str, int] = {"paraformer-large": 8404}


def keys() -> list[str]:
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("_"))


def path(key: str) -> Path:
    """The folder of one shipped config, e.g. `path("sd3-medium") / "vae" / "config.json"`."""
    folder = ROOT / key
    if not folder.is_dir():
        raise KeyError(f"no shipped model config {key!r}; known: {', '.join(keys())}")
    return folder


def key_for(model: str, hub_ids: dict[str, str]) -> str | None:
    """The shipped key for a hub id, or for a folder named like one (`/models/ChatTTS` -> chattts);
    `hub_ids` (hub id -> key) is what the model's family ships (`Family.shipped`)."""
    if model in hub_ids:
        return hub_ids[model]
    lowered = {hub.lower(): key for hub, key in hub_ids.items()}
    if model.lower() in lowered:
        return lowered[model.lower()]
    name = Path(model).name.lower()
    return next((key for hub, key in hub_ids.items() if Path(hub).name.lower() == name), None)


def kv_bytes_per_token(text_config: dict, dtype_bytes: int) -> int:
    """layers x kv_heads x head_dim x 2 (K and V) x dtype bytes."""
    heads = text_config["num_attention_heads"]
    head_dim = text_config.get("head_dim") or text_config["hidden_size"] // heads
    kv_heads = text_config.get("num_key_value_heads") or heads
    return text_config["num_hidden_layers"] * kv_heads * head_dim * 2 * dtype_bytes


def text_config(folder: str | Path | None) -> dict:
    """The language model's part of a checkpoint's config.json (VLMs nest it as text_config or
    llm_config); {} without a config.json."""
    file = Path(folder) / "config.json" if folder is not None else None
    config = json.loads(file.read_text()) if file is not None and file.is_file() else {}
    return config.get("text_config") or config.get("llm_config") or config
