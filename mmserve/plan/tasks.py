"""One estimator per runner family (each takes a model entry): which configs size it and what its
activations / KV cache cost. A family with none is planned as "cannot be sized" (a warning)."""

from __future__ import annotations

import re

from mmserve.plan.estimates import (
    DTYPE_BYTES,
    GB,
    ModelEstimate,
    decoder_peak_bytes,
    gpu_dtype,
    kv_bytes_per_token,
    model_folder,
    read_json,
    sizes,
    weight_bytes,
)

SD3_TEXT_TOKENS = 77 + 256  # CLIP + T5 (max_sequence_length) tokens joined to the image tokens


def _unknown(task: str, args, why: str) -> ModelEstimate:
    return ModelEstimate(task, args.name, args.runner.model, None, 0.0, why)


def _text_config(folder) -> dict:
    config = read_json(folder, "config.json")
    return config.get("text_config") or config.get("llm_config") or config


def _lmdeploy(task: str, args, parts, dtype: str, text_config: dict) -> ModelEstimate:
    runner = args.runner
    weights = weight_bytes(parts, dtype, runner.quantization)
    reserve = getattr(runner, "kv_cache_reserve_gb", 3.0)
    tokens = runner.session_len or text_config.get("max_position_embeddings", 4096)
    one_session = kv_bytes_per_token(text_config, DTYPE_BYTES[dtype]) * tokens / GB
    return ModelEstimate(
        task, args.name, runner.model, weights / GB, reserve + one_session,
        f"lmdeploy: {reserve:g} GB reserve (kv_cache_reserve_gb) + KV of one {tokens}-token session "
        f"({one_session:.2f} GB); the KV cache takes the rest of the share at replica start",
        kv_fills_share=True)


def llm(args) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model)
    parts = sizes(runner.model)
    if parts is None:
        return _unknown("llm", args, "no config to size it")
    dtype = gpu_dtype(runner.dtype, "bfloat16")
    text = _text_config(folder)
    if runner.uses_lmdeploy:
        return _lmdeploy("llm", args, parts, dtype, text)
    per_token = kv_bytes_per_token(text, DTYPE_BYTES[dtype])
    tokens = runner.max_input_tokens + runner.max_new_tokens
    prefill = runner.max_input_tokens * (3 * text["intermediate_size"] + 4 * text["hidden_size"]) * DTYPE_BYTES[dtype]
    return ModelEstimate(
        "llm", args.name, runner.model, weight_bytes(parts, dtype, runner.quantization) / GB,
        (per_token * tokens + prefill) / GB,
        f"KV {per_token / 1e3:.0f} kB/token x {tokens} tokens x 1 session (generation is serialized per "
        f"replica) + prefill activations of one {runner.max_input_tokens}-token prompt")


def vlm(args) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model)
    parts = sizes(runner.model)
    if parts is None:
        return _unknown("vlm", args, "no config to size it")
    dtype = gpu_dtype(runner.dtype)
    text = _text_config(folder)
    if runner.uses_lmdeploy:
        return _lmdeploy("vlm", args, parts, dtype, text)
    tokens = runner.session_len or 8192
    per_token = kv_bytes_per_token(text, DTYPE_BYTES[dtype])
    vision = read_json(folder, "config.json").get("vision_config", {})
    tiles = 13 * max(runner.max_images, 1)  # up to 12 tiles + a thumbnail per image
    patches = (448 // 14) ** 2
    vision_bytes = tiles * patches * 4 * vision.get("intermediate_size", 4096) * DTYPE_BYTES[dtype]
    return ModelEstimate(
        "vlm", args.name, runner.model, weight_bytes(parts, dtype, runner.quantization) / GB,
        (per_token * tokens + vision_bytes) / GB,
        f"KV {per_token / 1e3:.0f} kB/token x {tokens} tokens x 1 session (serialized) + vision tower "
        f"activations for {tiles} tiles ({runner.max_images} images x 13)")


def image(args, side: int) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model)
    parts = sizes(runner.model)
    if parts is None:
        return _unknown("image", args, "no config to size it")
    if runner.drop_t5:
        parts = tuple(p for p in parts if p.name != "text_encoder_3")
    dtype = gpu_dtype(runner.dtype)
    bytes_ = DTYPE_BYTES[dtype]
    vae = read_json(folder / "vae", "config.json")
    transformer = read_json(folder / "transformer", "config.json")
    channels = vae.get("block_out_channels", [128, 256])
    vae_peak = decoder_peak_bytes(channels[1], channels[0], side * side, bytes_)
    hidden = transformer.get("num_attention_heads", 24) * transformer.get("attention_head_dim", 64)
    image_tokens = (side // 8 // transformer.get("patch_size", 2)) ** 2
    per_image = 2 * (image_tokens + SD3_TEXT_TOKENS) * hidden * 12 * bytes_  # CFG doubles the batch
    images = getattr(runner, "max_images_per_call", 1)
    slicing = getattr(runner, "vae_slicing", False)
    total = per_image * images + vae_peak * (1 if slicing else images)
    weights = weight_bytes(parts, dtype, runner.quantization, quantized={"transformer", "text_encoder_3"})
    return ModelEstimate(
        "image", args.name, runner.model, weights / GB, total / GB,
        f"{side}x{side} (gateway max_image_side): VAE decode peak {vae_peak / GB:.2f} GB per image "
        f"{'once (vae_slicing)' if slicing else f'x {images} images'} + MMDiT activations "
        f"{per_image / GB:.2f} GB per image x {images} images per call (max_images_per_call)")


def music(args) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model)
    parts = sizes(runner.model)
    if parts is None:
        return _unknown("music", args, "no config to size it")
    dtype = gpu_dtype(runner.dtype)
    vae = read_json(folder / "vae", "config.json")
    channels = vae.get("decoder_channels", 128)
    samples = int(runner.max_duration_s * vae.get("sampling_rate", 44100))
    peak = decoder_peak_bytes(channels, channels, samples, DTYPE_BYTES[dtype])
    return ModelEstimate(
        "music", args.name, runner.model, weight_bytes(parts, dtype) / GB, peak / GB,
        f"Oobleck VAE decode of one {runner.max_duration_s:g} s clip ({samples} samples x {channels} "
        "channels at full rate); the DiT's 1024-frame activations are small beside it")


def asr(args) -> ModelEstimate:
    runner = args.runner
    found = {name: sizes(model) for name, model in
             (("model", runner.model), ("vad_model", runner.vad_model), ("punc_model", runner.punc_model)) if model}
    if found["model"] is None:
        return _unknown("asr", args, "no config to size the recognizer")
    parts = [p for ps in found.values() if ps for p in ps]
    notes = [f"{name} {getattr(runner, name)} not sized (no shipped config): not in the weights"
             for name, ps in found.items() if ps is None]
    config = _funasr_config(model_folder(runner.model))
    encoder = config.get("encoder_conf", {})
    frames = runner.batch_size_s * 100 // config.get("frontend_conf", {}).get("lfr_n", 6)
    width = encoder.get("linear_units", 2048) + 3 * encoder.get("output_size", 512)
    activation = frames * width * 4 * 2
    return ModelEstimate(
        "asr", args.name, runner.model, weight_bytes(parts, "float32") / GB, activation / GB,
        f"fp32 (FunASR); {runner.batch_size_s} s of VAD segments per batch = {frames} LFR frames x "
        f"{width} encoder activations, twice", notes)


def _funasr_config(folder) -> dict:
    import yaml

    if folder is None or not (folder / "config.yaml").exists():
        return {}
    return yaml.safe_load((folder / "config.yaml").read_text())


def tts(args) -> ModelEstimate:
    runner, folder = args.runner, model_folder(args.runner.model)
    parts = sizes(runner.model)
    if parts is None:
        return _unknown("tts", args, "no config to size it")
    gpt = read_json(folder / "asset" / "gpt", "config.json")
    per_token = kv_bytes_per_token(gpt, 4)
    tokens = runner.max_new_token + runner.max_sentence_chars
    sentences = runner.max_batch_sentences
    return ModelEstimate(
        "tts", args.name, runner.model, weight_bytes(parts, "float32") / GB,
        per_token * tokens * sentences / GB,
        f"fp32 (ChatTTS); GPT KV {per_token / 1e3:.0f} kB/token x {tokens} tokens x {sentences} sentences "
        "per batch (max_batch_sentences)")


# CTranslate2's DataType ids in model.bin, and bytes per weight of each compute type on a GPU
_CT2_TYPES = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_CT2_BYTES = {"float32": 4, "int8": 1, "int16": 2, "int32": 4, "float16": 2, "bfloat16": 2}
_CT2_COMPUTE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int16": 2, "int8": 1, "int8_float32": 1,
                      "int8_float16": 1, "int8_bfloat16": 1}
WHISPER_FRAMES = 1500  # encoder positions of one 30 s window
WHISPER_TOKENS = 448  # the decoder's longest output


def ctranslate2_variables(path) -> list[tuple[str, tuple[int, ...], str, int]]:
    """(name, shape, stored type, bytes) of each variable in a CTranslate2 `model.bin`, read from the
    file's headers only (each variable's data is skipped), so sizing a 3 GB model reads a few kB."""
    import struct

    variables = []
    with open(path, "rb") as f:
        def read(fmt: str):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))

        def string() -> str:
            (length,) = read("H")
            return f.read(length).rstrip(b"\0").decode()

        (version,) = read("I")
        if version >= 2:
            string(), read("I")  # spec name, spec revision
        (count,) = read("I")
        for _ in range(count):
            name = string()
            (rank,) = read("B")
            shape = read("I" * rank) if rank else ()
            kind, size = read("BI")
            if version < 4:  # older files store the item size instead of the type
                kind = {4: 0, 2: 4, 1: 1}.get(kind, 0)
            variables.append((name, tuple(shape), _CT2_TYPES.get(kind, "float32"), size))
            f.seek(size, 1)
    return variables


def whisper(args) -> ModelEstimate:
    """faster-whisper: weights = model.bin's size x (the compute type's bytes / the stored type's bytes);
    activations = the encoder of one 30 s window + the decoder's self- and cross-attention caches for
    every beam."""
    runner, folder = args.runner, model_folder(args.runner.model)
    if folder is None or not (folder / "model.bin").is_file():
        return _unknown("asr", args, "no CTranslate2 model.bin to size it")
    variables = ctranslate2_variables(folder / "model.bin")
    by_type: dict[str, int] = {}
    for _, _, kind, size in variables:
        by_type[kind] = by_type.get(kind, 0) + size
    stored = max(by_type, key=by_type.get)
    compute = runner.compute_type
    if compute in ("auto", "default"):  # auto = float16 on a GPU; default keeps the stored type
        compute = "float16" if compute == "auto" else stored
    file_bytes = (folder / "model.bin").stat().st_size
    weights = file_bytes * _CT2_COMPUTE_BYTES[compute] / _CT2_BYTES[stored]
    shapes = {name: shape for name, shape, _, _ in variables}
    d_model = shapes.get("encoder/conv1/weight", (1280,))[0]
    layers = len({name.split("/")[1] for name in shapes if re.match(r"decoder/layer_\d+/", name)}) or 32
    act_bytes = 4 if compute in ("float32", "int8_float32", "int8", "int16") else 2
    beams = runner.beam_size
    heads = max(d_model // 64, 1)
    encoder = WHISPER_FRAMES * d_model * 4 * 2 * act_bytes + heads * WHISPER_FRAMES ** 2 * act_bytes
    caches = layers * 2 * beams * (WHISPER_FRAMES + WHISPER_TOKENS) * d_model * act_bytes
    return ModelEstimate(
        "asr", args.name, runner.model, weights / GB, (encoder + caches) / GB,
        f"CTranslate2 {compute} (model.bin {file_bytes / GB:.3f} GB stored as {stored}); one 30 s window: "
        f"encoder activations + cross/self-attention caches of {beams} beams x {layers} layers x "
        f"({WHISPER_FRAMES} + {WHISPER_TOKENS}) positions x d_model {d_model}; CTranslate2 allocates outside "
        "torch's cap, inside the headroom")


def unsized(args) -> ModelEstimate:
    return _unknown(args.task, args, f"the planner has no estimator for family {args.family.name!r}")


# family -> estimator(model entry, image side); the image side only matters to image models
ESTIMATORS = {
    "funasr-paraformer": lambda args, side: asr(args),
    "faster-whisper": lambda args, side: whisper(args),
    "diffusers-sd3": image,
    "transformers-llm": lambda args, side: llm(args),
    "lmdeploy-llm": lambda args, side: llm(args),
    "chattts": lambda args, side: tts(args),
    "transformers-vlm": lambda args, side: vlm(args),
    "lmdeploy-vlm": lambda args, side: vlm(args),
    "diffusers-stable-audio": lambda args, side: music(args),
}

