"""Tiny SenseVoice-Small: the hub repo `iic/SenseVoiceSmall`'s layout with random weights.

The folder has the files a ModelScope download has: `configuration.json` (naming `config.yaml`,
`model.pt`, the sentencepiece model and `am.mvn`), `config.yaml` with the real class names
(`SenseVoiceSmall`, `SenseVoiceEncoderSmall`, `SentencepiecesTokenizer`, `WavFrontend`) and the
real structure (SAN-M encoder with `encoders0` + `encoders` + `tp_encoders`, CTC head, 7x6 LFR
fbank frontend with CMVN) at tiny dimensions, a random-weight `model.pt`, and a small BPE
sentencepiece model trained here, standing in for `chn_jpn_yue_eng_ko_spectok.bpe.model`, that
holds SenseVoice's rich tags (`<|zh|>`, `<|NEUTRAL|>`, `<|Speech|>`, `<|withitn|>`, ...) as
user-defined pieces, so they decode as literal text as they do with the real model.
`funasr.AutoModel(model=dir)` loads it exactly as it loads the real weights.

Differences from the real model, besides the sizes: the vocabulary has a few hundred pieces, not
25055, so the tags have other ids (SenseVoice's inference reads no tag id from the vocabulary,
except `ban_emo_unk`, which indexes id 25009 and so is not usable with this model); the training
-only SpecAugment block is left out of the config (it has no weights); the frontend does not dither
(`dither: 0.0`), so the same audio always gives the same noise text.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from mmserve.tiny.funasr import write_cmvn

BPE_MODEL = "chn_jpn_yue_eng_ko_spectok.bpe.model"  # the file name the real repo ships

# SenseVoice's rich tags, as its tokenizer holds them and funasr's postprocess_utils lists them
LANGUAGE_TAGS = ["<|zh|>", "<|en|>", "<|yue|>", "<|ja|>", "<|ko|>", "<|nospeech|>"]
EMOTION_TAGS = ["<|HAPPY|>", "<|SAD|>", "<|ANGRY|>", "<|NEUTRAL|>", "<|FEARFUL|>", "<|DISGUSTED|>",
                "<|SURPRISED|>", "<|EMO_UNKNOWN|>"]
EVENT_TAGS = ["<|Speech|>", "<|BGM|>", "<|Applause|>", "<|Laughter|>", "<|Cry|>", "<|Sneeze|>", "<|Breath|>",
              "<|Cough|>", "<|Sing|>", "<|Speech_Noise|>", "<|Event_UNK|>", "<|GBG|>"]
ITN_TAGS = ["<|withitn|>", "<|woitn|>"]
RICH_TAGS = LANGUAGE_TAGS + EMOTION_TAGS + EVENT_TAGS + ITN_TAGS

# Short sentences in the five languages the real tokenizer is named for (zh, ja, yue, en, ko).
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "speech recognition turns sound into text and text into meaning",
    "hello world this is a model serving test on a small machine",
    "please transcribe the following audio clip into english",
    "欢迎大家来体验达摩院推出的语音识别模型",
    "今天天气很好我们一起去公园散步吧",
    "语音识别把声音转换成文字",
    "我哋今日去饮茶好唔好",
    "佢讲嘢好快我听唔明",
    "うちの中学は弁当制です",
    "今日はいい天気ですね",
    "조금만 생각을 하면서 살면 훨씬 편할 거야",
    "안녕하세요 만나서 반갑습니다",
    "Numbers 0 1 2 3 4 5 6 7 8 9, and punctuation: , . ! ? 。 ， ？ ！",
]

TINY = {"output_size": 32, "attention_heads": 4, "linear_units": 64, "num_blocks": 2, "tp_blocks": 1}
VOCAB_SIZE = 320


def config(dims: dict = TINY) -> dict:
    """SenseVoiceSmall's config.yaml structure with `dims` for the encoder."""
    return {
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": {
            **dims,
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
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": {
            "fs": 16000,
            "window": "hamming",
            "n_mels": 80,
            "frame_length": 25,
            "frame_shift": 10,
            "lfr_m": 7,
            "lfr_n": 6,
            "cmvn_file": None,
            # WavFrontend dithers by default (1.0); random weights would turn that noise into a
            # different text per call, so the tiny model's frontend is deterministic.
            "dither": 0.0,
        },
    }


def _train_bpe(path: Path, vocab_size: int = VOCAB_SIZE) -> None:
    """A BPE sentencepiece model with the rich tags as user-defined (never split, decoded as text)
    pieces; id 0 is `<unk>`, which SenseVoice's CTC uses as its blank, as in the real model."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS), model_writer=model, model_type="bpe", vocab_size=vocab_size,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, user_defined_symbols=RICH_TAGS, character_coverage=1.0,
        hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    path.write_bytes(model.getvalue())



def build(out_dir: Path) -> None:
    """Write the tiny SenseVoice-Small folder into out_dir (created if missing)."""
    import torch
    import yaml

    with contextlib.redirect_stdout(io.StringIO()):  # funasr prints an ffmpeg notice on import
        from funasr import AutoModel

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = config()
    _train_bpe(folder / BPE_MODEL)
    write_cmvn(folder / "am.mvn", 80 * cfg["frontend_conf"]["lfr_m"])
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    metas = {"tokenizer_conf": {"bpemodel": BPE_MODEL}, "frontend_conf": {"cmvn_file": "am.mvn"}}
    conf = {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {"init_param": "model.pt", "config": "config.yaml", **metas},
    }
    (folder / "configuration.json").write_text(json.dumps(conf, indent=2), encoding="utf-8")

    build_cfg = json.loads(json.dumps(cfg))  # deep copy: build_model mutates nested confs
    for key, rel in metas.items():  # the file metas resolved the way AutoModel does for a download
        for sub, name in rel.items():
            build_cfg[key][sub] = str(folder / name)
    torch.manual_seed(0)
    model, _ = AutoModel.build_model(**build_cfg, device="cpu", ncpu=torch.get_num_threads(), disable_update=True)
    torch.save(model.state_dict(), folder / "model.pt")
