"""Tiny HF-native InternVL (``InternVLForConditionalGeneration``) with its processor.

Same layout as ``OpenGVLab/InternVL3-*-hf``: an InternViT vision tower, pixel-shuffle
(``downsample_ratio``) and an MLP projector feeding a Qwen2 language model. Tiles of 32 px with
8 px patches give 16 patches, shuffled down to ``image_seq_length = 4`` tokens per tile. Head
dims are 64 so lmdeploy's TurboMind kernels accept the folder too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mmserve.tiny.tokenizers import build_chatml_tokenizer

IMAGE_SIZE = 32
PATCH_SIZE = 8
DOWNSAMPLE_RATIO = 0.5
IMAGE_SEQ_LENGTH = int((IMAGE_SIZE // PATCH_SIZE) ** 2 * DOWNSAMPLE_RATIO**2)

SPECIAL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}

# ChatML with one <IMG_CONTEXT> per image part, as the real InternVL3-hf template writes it; the
# processor expands each into <img> + image_seq_length x <IMG_CONTEXT> per tile + </img>.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' %}{{- '<IMG_CONTEXT>\\n' }}"
    "{%- elif part['type'] == 'video' %}{{- '<video>\\n' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build(out_dir: Path) -> Path:
    """Write a complete InternVL folder (weights, config, tokenizer, processor) into ``out_dir``."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    out_dir = Path(out_dir)
    tokenizer = build_chatml_tokenizer(out_dir, extra_special_tokens=SPECIAL_TOKENS, chat_template=CHAT_TEMPLATE)

    vision = InternVLVisionConfig(
        hidden_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=256,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    text = Qwen2Config(
        architectures=["Qwen2ForCausalLM"],  # lmdeploy picks the text model by this name
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.1,  # at the default 0.02 greedy decoding only repeats "\n"
    )
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=DOWNSAMPLE_RATIO,
    )
    torch.manual_seed(0)
    model = InternVLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)

    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, min_patches=1, max_patches=4),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=IMAGE_SEQ_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir
