"""Tiny LoRA adapters for the tiny Qwen (`mmserve.tiny.qwen`), built offline with peft.

Two adapters, each with its own random non-zero LoRA weights on every attention and MLP
projection, so each changes the tiny model's greedy output in its own way (a freshly initialised
LoRA has B = 0 and would change nothing). ``<out>/<adapter>/`` is an ordinary peft adapter folder
(adapter_config.json + adapter_model.safetensors) whose base is the tiny Qwen folder next to it.
"""

from __future__ import annotations

from pathlib import Path

import torch

ADAPTERS = {"pirate": 1, "poet": 2}  # adapter folder -> seed of its random weights
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build(out_dir: Path) -> Path:
    """Write the adapters into ``out_dir/<name>/``; builds the tiny Qwen beside it first if needed."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from mmserve.tiny.catalog import build_one

    out_dir = Path(out_dir)
    base_dir = build_one("qwen", out_dir.parent)
    for name, seed in ADAPTERS.items():
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS,
                            init_lora_weights=False, task_type="CAUSAL_LM")
        model = get_peft_model(base, config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for pname, param in model.named_parameters():
                if "lora_" in pname:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
        model.save_pretrained(out_dir / name)
    return out_dir
