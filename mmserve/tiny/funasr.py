"""Tiny FunASR models: SeACo-Paraformer ASR, FSMN-VAD and CT-Transformer punctuation.

Each folder has the files a ModelScope download has (configuration.json naming config.yaml,
model.pt, tokens.json, am.mvn, seg_dict), so `funasr.AutoModel(model=dir, vad_model=dir,
punc_model=dir)` loads them exactly as it loads the real models. Configs follow the FunASR
templates with small dimensions; weights are random.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import torch
import yaml

# ~200 frequent Chinese characters and a few English BPE pieces ("@@" marks a continuation, as
# in the real vocab8404), enough for mixed-language noise text and for hotword tokenization.
_CHINESE = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对"
    "可里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同"
    "三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名"
    "定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内"
    "加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原"
)
_ENGLISH = {  # word -> BPE pieces, written to seg_dict the way the real model ships it
    "hello": ["he@@", "llo"],
    "world": ["wor@@", "ld"],
    "speech": ["spe@@", "ech"],
    "model": ["mo@@", "del"],
    "serve": ["ser@@", "ve"],
    "the": ["the"],
    "and": ["and"],
    "is": ["is"],
    "a": ["a"],
    "ray": ["ray"],
}
_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]

_WAV_FRONTEND = {
    "fs": 16000,
    "window": "hamming",
    "n_mels": 80,
    "frame_length": 25,
    "frame_shift": 10,
    "dither": 0.0,
}


def _asr_tokens() -> list[str]:
    pieces = sorted({p for ps in _ENGLISH.values() for p in ps} | set(_LETTERS))
    chars = list(dict.fromkeys(_CHINESE))
    return ["<blank>", "<s>", "</s>", *chars, *pieces, "<unk>"]


def _punc_tokens() -> list[str]:
    chars = list(dict.fromkeys(_CHINESE))
    words = list(dict.fromkeys([*_ENGLISH, *_LETTERS]))
    return ["<blank>", "<s>", "</s>", *chars, *words, "<unk>"]


# what every Paraformer config (offline and online) ends with after its frontend's name
ASR_TAIL = {
    "frontend_conf": {**_WAV_FRONTEND, "lfr_m": 7, "lfr_n": 6},
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    "ctc_conf": {"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True, "ignore_nan_grad": True},
    "normalize": None,
}

TINY = {"d": 64, "encoder_units": 128, "encoder_blocks": 2, "decoder_units": 128, "decoder_blocks": 2,
        "seaco_units": 64, "seaco_blocks": 1}


def _seaco_config(vocab_size: int, dims: dict = TINY) -> dict:
    d = dims["d"]
    sanm_decoder = {
        "attention_heads": 4,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "self_attention_dropout_rate": 0.1,
        "src_attention_dropout_rate": 0.1,
        "sanm_shfit": 0,
    }
    return {
        "model": "SeacoParaformer",
        "model_conf": {
            "ctc_weight": 0.0,
            "lsm_weight": 0.1,
            "length_normalized_loss": True,
            "predictor_weight": 1.0,
            "predictor_bias": 1,
            "sampling_ratio": 0.75,
            "inner_dim": d,  # bias encoder and SeACo decoder width = decoder embedding width
            "bias_encoder_type": "lstm",
            "bias_encoder_bid": False,
            "seaco_lsm_weight": 0.1,
            "seaco_length_normal": True,
            "train_decoder": False,
            "NO_BIAS": vocab_size - 2,  # the "no hotword" class of the bias output layer
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "output_size": d,
            "attention_heads": 4,
            "linear_units": dims["encoder_units"],
            "num_blocks": dims["encoder_blocks"],
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1,
            "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True,
            "kernel_size": 11,
            "sanm_shfit": 0,
            "selfattention_layer_type": "sanm",
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {**sanm_decoder, "linear_units": dims["decoder_units"], "num_blocks": dims["decoder_blocks"],
                         "att_layer_num": dims["decoder_blocks"], "kernel_size": 11},
        "seaco_decoder": "ParaformerSANMDecoder",
        "seaco_decoder_conf": {
            **sanm_decoder,
            "linear_units": dims["seaco_units"],
            "num_blocks": dims["seaco_blocks"],
            "kernel_size": 21,
            "use_output_layer": False,
            "wo_input_layer": True,
        },
        "predictor": "CifPredictorV3",
        "predictor_conf": {
            "idim": d,
            "threshold": 1.0,
            "l_order": 1,
            "r_order": 1,
            "tail_threshold": 0.45,
            "smooth_factor2": 0.25,
            "noise_threshold2": 0.01,
            "upsample_times": 3,
            "use_cif1_cnn": False,
            "upsample_type": "cnn_blstm",
        },
        "frontend": "WavFrontend",
        **ASR_TAIL,
    }


TINY_VAD_DECIBEL_THRES = -25.0
_VAD_SILENCE_LOGIT_BIAS = -12.0  # softmax keeps the silence class near e^-12, never exactly 0 (log is taken)


def _vad_says_speech(model) -> None:
    """Bias the FSMN output layer against the silence class (sil_pdf_ids [0]), so every frame the
    decibel gate lets through counts as speech (1 - p(silence) >= p(silence) + speech_noise_thres).
    With 248 classes a random init already gives silence ~0.4%; the bias makes that hold whatever
    the seed or class count, so turn detection depends on the level alone."""
    model.encoder.out_linear2.linear.bias[0] += _VAD_SILENCE_LOGIT_BIAS


def _vad_config() -> dict:
    return {
        "model": "FsmnVADStreaming",
        "model_conf": {
            "sample_rate": 16000,
            "detect_mode": 1,
            "snr_mode": 0,
            "max_end_silence_time": 800,
            "max_start_silence_time": 3000,
            "do_start_point_detection": True,
            "do_end_point_detection": True,
            "window_size_ms": 200,
            "sil_to_speech_time_thres": 150,
            "speech_to_sil_time_thres": 150,
            "speech_2_noise_ratio": 1.0,
            "do_extend": 1,
            "lookback_time_start_point": 200,
            "lookahead_time_end_point": 100,
            "max_single_segment_time": 60000,
            "snr_thres": -100.0,
            "noise_frame_num_used_for_snr": 100,
            # Random weights cannot tell speech from silence, so the tiny VAD gates on level through
            # FSMN-VAD's own decibel check (10*log10 of a 25 ms frame's energy, float samples): -25 dB
            # is about -51 dBFS RMS, above quiet-room noise (~-34 dB per frame at -60 dBFS) and below
            # speech (tests/data/speech_en.wav: median +1 dB per frame). See _vad_says_speech.
            "decibel_thres": TINY_VAD_DECIBEL_THRES,
            "speech_noise_thres": 0.6,
            "fe_prior_thres": 0.0001,
            "silence_pdf_num": 1,
            "sil_pdf_ids": [0],
            "speech_noise_thresh_low": -0.1,
            "speech_noise_thresh_high": 0.3,
            "output_frame_probs": False,
            "frame_in_ms": 10,
            "frame_length_ms": 25,
        },
        "encoder": "FSMN",
        "encoder_conf": {
            "input_dim": 400,
            "input_affine_dim": 32,
            "fsmn_layers": 2,
            "linear_dim": 32,
            "proj_dim": 16,
            "lorder": 20,
            "rorder": 0,
            "lstride": 1,
            "rstride": 0,
            "output_affine_dim": 32,
            "output_dim": 248,
        },
        # The streaming VAD needs the online frontend; the offline WavFrontend fails at inference.
        "frontend": "WavFrontendOnline",
        "frontend_conf": {**_WAV_FRONTEND, "lfr_m": 5, "lfr_n": 1},
    }


def _punc_config() -> dict:
    d = 32
    return {
        "model": "CTTransformer",
        "model_conf": {
            "ignore_id": 0,
            "embed_unit": d,
            "att_unit": d,
            "dropout_rate": 0.1,
            "punc_list": ["<unk>", "_", "，", "。", "？", "、"],
            "punc_weight": [1.0] * 6,
            "sentence_end_id": 3,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "input_size": d,
            "output_size": d,
            "attention_heads": 4,
            "linear_units": 64,
            "num_blocks": 1,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.0,
            "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True,
            "kernel_size": 11,
            "sanm_shfit": 0,
            "selfattention_layer_type": "sanm",
            "padding_idx": 0,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
    }


def write_cmvn(path: Path, dim: int) -> None:
    """Kaldi nnet text CMVN: shift log-mel energies near zero mean, scale to unit-ish range."""
    shift = " ".join(["-8.0"] * dim)
    scale = " ".join(["0.25"] * dim)
    path.write_text(
        "<Nnet>\n"
        f"<Splice> {dim} {dim}\n[ 0 ]\n"
        f"<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {shift} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {scale} ]\n"
        "</Nnet>\n",
        encoding="utf-8",
    )


def _write_folder(folder: Path, cfg: dict, metas: dict, task: str, tweak=None) -> None:
    """Write configuration.json + config.yaml, build the real class from them, save its weights."""
    from funasr import AutoModel

    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    conf = {
        "framework": "pytorch",
        "task": task,
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {"init_param": "model.pt", "config": "config.yaml", **metas},
    }
    (folder / "configuration.json").write_text(json.dumps(conf, indent=2), encoding="utf-8")

    build_cfg = json.loads(json.dumps(cfg))  # deep copy: build_model mutates nested confs
    for key, rel in metas.items():  # resolve file metas the way AutoModel does for a download
        for sub, name in rel.items():
            build_cfg.setdefault(key, {})[sub] = str(folder / name)
    model, _ = AutoModel.build_model(**build_cfg, device="cpu", ncpu=torch.get_num_threads(), disable_update=True)
    if tweak is not None:
        with torch.no_grad():
            tweak(model)
    torch.save(model.state_dict(), folder / "model.pt")


def _large_config(tokens: list[str]) -> tuple[list[str], dict]:
    """The real SeACo-Paraformer-large config, with the token list padded to its 8404 entries."""
    import yaml

    from mmserve import model_configs

    vocab = model_configs.VOCAB_SIZES["paraformer-large"]
    tokens = tokens[:-1] + [f"<pad_{i}>" for i in range(vocab - len(tokens))] + tokens[-1:]  # <unk> stays last
    config = yaml.safe_load((model_configs.path("paraformer-large") / "config.yaml").read_text(encoding="utf-8"))
    config["model_conf"]["NO_BIAS"] = len(tokens) - 2
    return tokens, config


def build(out_dir: Path, *, size: str = "tiny") -> Path:
    """Write `paraformer/`, `vad/` and `punc/` under out_dir and return out_dir.

    size="large" gives the recognizer SeACo-Paraformer-large's real architecture (benchmarks: the
    config shipped in mmserve/model_configs, its vocabulary padded to the real size); VAD and
    punctuation stay tiny either way.
    """
    out_dir = Path(out_dir)
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # funasr prints an ffmpeg notice on import
        import funasr  # noqa: F401

    asr = out_dir / "paraformer"
    asr.mkdir(parents=True, exist_ok=True)
    tokens = _asr_tokens()
    config = _seaco_config(len(tokens))
    if size == "large":
        tokens, config = _large_config(tokens)
    (asr / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
    seg = [f"{w} {' '.join(ps)}" for w, ps in _ENGLISH.items()] + [f"{c} {c}" for c in dict.fromkeys(_CHINESE)]
    (asr / "seg_dict").write_text("\n".join(seg) + "\n", encoding="utf-8")
    write_cmvn(asr / "am.mvn", 80 * 7)
    _write_folder(
        asr,
        config,
        {
            "tokenizer_conf": {"token_list": "tokens.json", "seg_dict_file": "seg_dict"},
            "frontend_conf": {"cmvn_file": "am.mvn"},
        },
        "auto-speech-recognition",
    )

    vad = out_dir / "vad"
    vad.mkdir(parents=True, exist_ok=True)
    write_cmvn(vad / "am.mvn", 80 * 5)
    _write_folder(vad, _vad_config(), {"frontend_conf": {"cmvn_file": "am.mvn"}}, "voice-activity-detection",
                  tweak=_vad_says_speech)

    punc = out_dir / "punc"
    punc.mkdir(parents=True, exist_ok=True)
    (punc / "tokens.json").write_text(json.dumps(_punc_tokens(), ensure_ascii=False), encoding="utf-8")
    _write_folder(
        punc,
        _punc_config(),
        {"tokenizer_conf": {"token_list": "tokens.json"}},
        "punctuation",
        # A trained model never predicts the "<unk>" class; random weights would print it as text.
        tweak=lambda m: m.decoder.bias[0].fill_(-1e4),
    )
    return out_dir
