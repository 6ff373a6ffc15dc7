"""A tiny online (streaming) Paraformer: the architecture of FunASR's
`speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online` (ParaformerStreaming: SCAMA chunk
encoder SANMEncoderChunkOpt, ParaformerSANMDecoder, CifPredictorV2, the online fbank frontend) with
small dimensions and random weights, in a folder laid out like the ModelScope download. It shares
the offline tiny Paraformer's vocabulary and CMVN, as the real online and offline models share theirs.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch

from mmserve.tiny.funasr import ASR_TAIL, TINY, _asr_tokens, _write_folder, write_cmvn

# Paraformer-large online's widths and depths (220M parameters with its 8404-token vocabulary)
LARGE = {"d": 512, "encoder_units": 2048, "encoder_blocks": 50, "decoder_units": 2048, "decoder_blocks": 16}
LARGE_VOCAB = 8404


def streaming_config(dims: dict = TINY) -> dict:
    """The large online model's config (chunks of 10 LFR frames, strides of 8 and 10, 4 chunks of encoder
    look-back, 1 of decoder look-back) at `dims`' widths and depths."""
    d = dims["d"]
    return {
        "model": "ParaformerStreaming",
        "model_conf": {"ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True, "predictor_weight": 1.0,
                       "predictor_bias": 1, "sampling_ratio": 0.75},
        "encoder": "SANMEncoderChunkOpt",
        "encoder_conf": {
            "output_size": d, "attention_heads": 4, "linear_units": dims["encoder_units"],
            "num_blocks": dims["encoder_blocks"], "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1, "input_layer": "pe_online", "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True, "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
            "chunk_size": [12, 15], "stride": [8, 10], "pad_left": [0, 0],
            "encoder_att_look_back_factor": [4, 4], "decoder_att_look_back_factor": [1, 1],
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {
            "attention_heads": 4, "linear_units": dims["decoder_units"], "num_blocks": dims["decoder_blocks"],
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.1,
            "src_attention_dropout_rate": 0.1, "att_layer_num": dims["decoder_blocks"], "kernel_size": 11,
            "sanm_shfit": 5,
        },
        "predictor": "CifPredictorV2",
        "predictor_conf": {"idim": d, "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45},
        "frontend": "WavFrontendOnline",
        **ASR_TAIL,
    }


def build(out_dir: Path, *, size: str = "tiny") -> Path:
    """Write the folder; size="large" gives the real model's dimensions and vocabulary size (random
    weights, for benchmarks of its streaming state and speed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # funasr prints an ffmpeg notice on import
        import funasr  # noqa: F401
    tokens = _asr_tokens()
    if size == "large":  # padded to the real vocabulary, <unk> kept last
        tokens = tokens[:-1] + [f"<pad_{i}>" for i in range(LARGE_VOCAB - len(tokens))] + tokens[-1:]
    (out_dir / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    write_cmvn(out_dir / "am.mvn", 80 * 7)
    _write_folder(out_dir, streaming_config(LARGE if size == "large" else TINY),
                  {"tokenizer_conf": {"token_list": "tokens.json"}, "frontend_conf": {"cmvn_file": "am.mvn"}},
                  "auto-speech-recognition")
    return out_dir
