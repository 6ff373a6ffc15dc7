"""Tiny random-weight Qwen3 chat model: the real architecture and ChatML tokenizer, ~0.2 MB.

Loads with ``AutoModelForCausalLM`` / ``AutoTokenizer`` like a real Qwen3 checkpoint; generation
stops on ``<|im_end|>`` as with Qwen's own generation_config. The text it writes is gibberish.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmserve.tiny.tokenizers import ENDOFTEXT, IM_END, build_chatml_tokenizer


def build(out_dir: Path) -> Path:
    """Write a tiny Qwen3 causal LM with its tokenizer into ``out_dir`` and return the folder."""
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_chatml_tokenizer(out_dir)
    eos_id, pad_id = tokenizer.convert_tokens_to_ids([IM_END, ENDOFTEXT])

    config = Qwen3Config(
        vocab_size=-(-len(tokenizer) // 64) * 64,  # padded like real checkpoints
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        initializer_range=0.1,  # wider than the default 0.02 so greedy output varies instead of repeating
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=True, temperature=0.7, top_p=0.8, top_k=20
    )
    model.save_pretrained(out_dir)
    return out_dir
