"""A tiny Stable Diffusion 3 pipeline folder (random weights, real architecture and layout).

SD3-shaped where it matters for the serving path (16 latent channels, VAE x8, patch 2, two CLIP
encoders with projection, a T5 encoder, flow-matching scheduler), so 1024x1024 requests and
`drop_t5` behave as with SD3 Medium, while 128x128 at a few steps runs well under a second on CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
)

from mmserve.tiny.tokenizers import build_t5_tokenizer

CLIP_DIM = 32  # hidden size and projection size of each CLIP encoder
T5_DIM = 64  # = transformer joint_attention_dim; must be >= 2 * CLIP_DIM (pipeline pads CLIP to it)
_CORPUS = (
    "a photo of a cat sitting on a red chair in the sun",
    "an astronaut riding a horse on the moon, digital art",
    "a watercolor painting of mountains and a lake at dawn",
    "close up portrait of an old man with a beard, studio lighting",
    "a futuristic city skyline at night with neon lights and rain",
    "a bowl of fruit on a wooden table, oil painting, 4k",
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-printable-character table (byte-level BPE alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _clip_tokenizer(path: Path, pad_token: str) -> CLIPTokenizer:
    """Byte-level BPE with no merges: every byte and its word-final form, plus the two specials."""
    path.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer.from_pretrained(path, model_max_length=77, pad_token=pad_token)


def _clip_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModelWithProjection:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=CLIP_DIM,
        intermediate_size=64,
        projection_dim=CLIP_DIM,
        num_hidden_layers=2,  # the pipeline reads hidden_states[-2]
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config)


def build(out_dir: Path) -> Path:
    """Write a complete SD3 pipeline folder into out_dir and return it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / "_tokenizer_sources"
    torch.manual_seed(0)

    # SD3's first CLIP pads with <|endoftext|>, the second (bigG) with "!"; mirror that.
    tokenizer = _clip_tokenizer(scratch / "clip_l", pad_token="<|endoftext|>")
    tokenizer_2 = _clip_tokenizer(scratch / "clip_g", pad_token="!")
    tokenizer_3 = build_t5_tokenizer(scratch / "t5", list(_CORPUS) * 20)

    text_encoder_3 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_3),
            d_model=T5_DIM,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            pad_token_id=tokenizer_3.pad_token_id,
            eos_token_id=tokenizer_3.eos_token_id,
        )
    )
    transformer = SD3Transformer2DModel(
        sample_size=128,  # latent size: default output 1024x1024, as SD3 Medium
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_DIM,
        caption_projection_dim=32,
        pooled_projection_dim=2 * CLIP_DIM,
        pos_embed_max_size=96,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,  # three downsamples: x8
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=4,
        sample_size=1024,
        scaling_factor=1.5305,
        shift_factor=0.0609,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=_clip_encoder(tokenizer),
        tokenizer=tokenizer,
        text_encoder_2=_clip_encoder(tokenizer_2),
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    pipe.save_pretrained(out_dir)
    shutil.rmtree(scratch)
    return out_dir
