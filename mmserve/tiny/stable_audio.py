"""A tiny random-weight Stable Audio Open pipeline folder (diffusers `StableAudioPipeline`).

Same components and wiring as stabilityai/stable-audio-open-1.0 (T5 encoder -> projection ->
DiT over Oobleck VAE latents, DPM-Solver in v-prediction), shrunk so a full generation runs in a fraction of
a second on CPU. The pipeline always denoises `transformer.sample_size` latents and crops the
waveform afterwards, so the window length (not the request) sets the cost; this one is ~11.9 s of
stereo 16 kHz audio.
"""

from __future__ import annotations

import pathlib

import torch
from diffusers import (
    AutoencoderOobleck,
    CosineDPMSolverMultistepScheduler,
    StableAudioDiTModel,
    StableAudioPipeline,
    StableAudioProjectionModel,
)
from transformers import T5Config, T5EncoderModel

from mmserve.tiny.tokenizers import build_t5_tokenizer

SAMPLE_RATE = 16000
DOWNSAMPLING = [2, 4, 8, 8]  # hop 512 samples per latent frame
LATENT_FRAMES = 372  # 372 * 512 / 16000 = 11.9 s window
LATENT_CHANNELS = 8
TEXT_DIM = 32  # T5 d_model
COND_DIM = 32  # projection output: DiT cross-attention input; start+end seconds -> 2x global input

_CORPUS = [
    "ambient piano with soft rain and distant thunder",
    "upbeat electronic dance track with heavy bass and bright synth leads",
    "a hammer hitting a wooden surface, foley, close microphone",
    "lofi hip hop beat, vinyl crackle, mellow chords, 90 bpm",
    "orchestral strings swelling into a cinematic brass fanfare",
    "acoustic guitar fingerpicking, warm, intimate recording",
    "drum and bass breakbeat at 174 bpm with a rolling reese bassline",
    "birds singing in a forest at dawn, field recording",
    "jazz trio with upright bass, brushed drums and a grand piano solo",
    "techno kick drum loop, dark, industrial, warehouse",
    "calm meditation music with singing bowls and a low drone",
    "rock band with distorted electric guitars and a fast drum beat",
    "sparkling harp arpeggios over a gentle choir, fantasy soundtrack",
    "funky slap bass groove with wah guitar and tight hi-hats, 110 bpm",
    "ocean waves crashing on rocks, seagulls, wind noise",
    "epic trailer percussion, taiko drums, rising tension, huge impacts",
    "chiptune melody with square waves and an 8-bit arpeggiated bassline",
    "solo cello playing a slow, melancholic melody in D minor",
    "reggae skank guitar, one drop rhythm, deep dub echo and spring reverb",
    "city traffic ambience with car horns, footsteps and distant sirens",
]


def build(out_dir: pathlib.Path) -> pathlib.Path:
    """Write a complete StableAudioPipeline folder into out_dir and return it."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_t5_tokenizer(out_dir / "tokenizer", _CORPUS, model_max_length=128)

    torch.manual_seed(0)
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=TEXT_DIM,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )
    projection_model = StableAudioProjectionModel(
        text_encoder_dim=TEXT_DIM, conditioning_dim=COND_DIM, min_value=0, max_value=512
    )
    transformer = StableAudioDiTModel(
        sample_size=LATENT_FRAMES,
        in_channels=LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        num_key_value_attention_heads=2,
        out_channels=LATENT_CHANNELS,
        cross_attention_dim=32,
        time_proj_dim=16,
        global_states_input_dim=2 * COND_DIM,
        cross_attention_input_dim=COND_DIM,
    )
    vae = AutoencoderOobleck(
        encoder_hidden_size=8,
        downsampling_ratios=DOWNSAMPLING,
        channel_multiples=[1, 2, 2, 4],
        decoder_channels=8,
        decoder_input_channels=LATENT_CHANNELS,
        audio_channels=2,
        sampling_rate=SAMPLE_RATE,
    )
    # The scheduler Stable Audio Open ships (needs torchsde, a dependency of mmserve).
    scheduler = CosineDPMSolverMultistepScheduler(
        sigma_min=0.3,
        sigma_max=500,
        solver_order=2,
        prediction_type="v_prediction",
        sigma_data=1.0,
        sigma_schedule="exponential",
    )
    pipe = StableAudioPipeline(
        vae=vae,
        text_encoder=text_encoder,
        projection_model=projection_model,
        tokenizer=tokenizer,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(out_dir)
    return out_dir
