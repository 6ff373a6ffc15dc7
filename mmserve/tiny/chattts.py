"""Tiny random-weight ChatTTS 0.2.5: the real modules at small sizes, in the real folder layout.

ChatTTS hard-codes its architecture sizes in `ChatTTS.config.Config` (only the GPT body reads its
own config.json) and `Chat.load` checks the sha256 of all nine asset files against a built-in map.
So besides `asset/` this writes `mmserve_chattts.json` holding the tiny Config and the hashes of
the files written here; the TTS runner applies both to its `Chat` before `load`. A folder of real
weights has no such file and loads with the library defaults.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pybase16384 as b14
import torch
from safetensors.torch import save_file

from mmserve.runners.chattts import SIDECAR  # holds {"config": asdict(Config), "sha256": {...}}

# Tags that may appear inside refined text: ChatTTS keeps ids below [break_0] after refinement.
_INLINE_TAGS = ["[uv_break]", "[v_break]", "[lbreak]", "[laugh]"]
_CONTROL_TAGS = (
    [f"[break_{i}]" for i in range(8)]
    + [f"[laugh_{i}]" for i in range(3)]
    + [f"[oral_{i}]" for i in range(10)]
    + [f"[speed_{i}]" for i in range(10)]
    + ["[Stts]", "[Ptts]", "[spk_emb]", "[empty_spk]", "[Sbreak]", "[Pbreak]", "[Ebreak]", "[music]"]
)
_ENGLISH_WORDS = (
    "the and a to of in is it you that he was for on are with as i his they be at one have this "
    "from or had by hot word but what some we can out other were all there when up use your how "
    "said an each she which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound no "
    "most people my over know water than call first who may down side been now find hello world "
    "speech voice text model test good morning thank thanks please yes okay"
).split()

HIDDEN = 64  # GPT width; the speaker embedding and the Decoder input (HIDDEN // 2) follow it.


def _gb2312_level1() -> list[str]:
    """The 3755 most frequent hanzi (GB2312 level 1), in their standard order."""
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    return chars


def _vocab() -> list[str]:
    """BERT specials, punctuation, hanzi, English words and letters, then control tags (highest ids)."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    digits = [str(d) for d in range(10)]
    punct = list("，。、？！；：,.!?;:'\"-")
    text = punct + digits + letters + [f"##{c}" for c in letters + digits] + _gb2312_level1() + _ENGLISH_WORDS
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + text + _INLINE_TAGS + _CONTROL_TAGS


def _write_tokenizer(tok_dir: Path) -> int:
    from tokenizers import AddedToken
    from transformers import BertTokenizerFast

    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.txt").write_text("\n".join(_vocab()) + "\n", encoding="utf-8")
    tok = BertTokenizerFast.from_pretrained(str(tok_dir))
    tags = _INLINE_TAGS + _CONTROL_TAGS
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, normalized=False, special=True) for t in tags]}
    )
    tok.save_pretrained(str(tok_dir))
    # transformers 5.x no longer writes this file, but ChatTTS's asset check requires it.
    special = {k: str(getattr(tok, k)) for k in ("cls_token", "mask_token", "pad_token", "sep_token", "unk_token")}
    special["additional_special_tokens"] = tags
    (tok_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return len(tok)


def _tiny_config(num_text_tokens: int):
    """A ChatTTS Config made of new dataclass instances (the class defaults are shared objects)."""
    from ChatTTS.config import config as C

    rng = np.random.default_rng(0)
    std = rng.uniform(0.5, 1.0, HIDDEN)
    mean = rng.normal(0.0, 0.1, HIDDEN)
    vq_dim = 32
    return C.Config(
        path=C.Path(),
        decoder=C.Decoder(idim=HIDDEN // 2, odim=HIDDEN // 2, hidden=32, n_layer=1, bn_dim=16),
        dvae=C.DVAE(
            encoder=C.Decoder(idim=vq_dim // 2, odim=vq_dim, hidden=32, n_layer=1, bn_dim=16),
            decoder=C.Decoder(idim=vq_dim // 2, odim=vq_dim // 2, hidden=32, n_layer=1, bn_dim=16),
            vq=C.VQ(dim=vq_dim, levels=(5, 5, 5, 5), G=2, R=2),
        ),
        gpt=C.GPT(
            hidden_size=HIDDEN,
            intermediate_size=128,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=4096,
            num_audio_tokens=626,
            num_text_tokens=num_text_tokens,
            num_vq=4,
        ),
        embed=C.Embed(hidden_size=HIDDEN, num_audio_tokens=626, num_text_tokens=num_text_tokens, num_vq=4),
        vocos=C.Vocos(
            feature_extractor=C.FeatureExtractor(init_args=C.FeatureExtractorInitArgs()),
            backbone=C.Backbone(
                init_args=C.BackboneInitArgs(input_channels=100, dim=32, intermediate_dim=64, num_layers=1)
            ),
            head=C.FourierHead(init_args=C.FourierHeadInitArgs(dim=32)),
        ),
        # Speaker statistics: float16 std then mean, one value per GPT hidden unit, base16384-encoded.
        spk_stat=b14.encode_to_string(np.concatenate([std, mean]).astype(np.float16).tobytes()),
    )


def _save(module: torch.nn.Module, path: Path) -> None:
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path))


def build(out_dir: Path, *, size: str = "tiny") -> Path:
    """Write a complete ChatTTS custom folder (asset/ + sidecar) into out_dir and return it.

    size="real" keeps ChatTTS's own Config, i.e. the published model's architecture (benchmarks).
    """
    from ChatTTS.model import DVAE, Embed
    from transformers import LlamaConfig, LlamaModel
    from vocos import Vocos
    from vocos.pretrained import instantiate_class

    out_dir = Path(out_dir)
    asset = out_dir / "asset"
    asset.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    n_text_tokens = _write_tokenizer(asset / "tokenizer")
    if size == "real":
        from ChatTTS.config import Config

        cfg = Config()
    else:
        cfg = _tiny_config(n_text_tokens)

    vocos = Vocos(
        feature_extractor=instantiate_class(args=(), init=asdict(cfg.vocos.feature_extractor)),
        backbone=instantiate_class(args=(), init=asdict(cfg.vocos.backbone)),
        head=instantiate_class(args=(), init=asdict(cfg.vocos.head)),
    )
    _save(vocos, asset / "Vocos.safetensors")
    dvae = DVAE(
        decoder_config=asdict(cfg.dvae.decoder),
        encoder_config=asdict(cfg.dvae.encoder),
        vq_config=asdict(cfg.dvae.vq),
        dim=cfg.dvae.decoder.idim,
    )
    _save(dvae, asset / "DVAE.safetensors")
    _save(DVAE(decoder_config=asdict(cfg.decoder), dim=cfg.decoder.idim), asset / "Decoder.safetensors")
    e = cfg.embed
    _save(Embed(e.hidden_size, e.num_audio_tokens, e.num_text_tokens, e.num_vq), asset / "Embed.safetensors")

    g = cfg.gpt
    llama = LlamaConfig(
        hidden_size=g.hidden_size,
        intermediate_size=g.intermediate_size,
        num_attention_heads=g.num_attention_heads,
        num_key_value_heads=g.num_attention_heads,
        num_hidden_layers=g.num_hidden_layers,
        max_position_embeddings=g.max_position_embeddings,
        vocab_size=8,  # ChatTTS deletes the body's token embedding and uses Embed instead
        use_cache=g.use_cache,
    )
    LlamaModel(llama).save_pretrained(str(asset / "gpt"))

    files = [
        "Decoder.safetensors", "DVAE.safetensors", "Embed.safetensors", "Vocos.safetensors",
        "gpt/config.json", "gpt/model.safetensors",
        "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/tokenizer.json",
    ]
    sha = {
        "sha256_asset_" + f.replace("/", "_").replace(".", "_"): hashlib.sha256((asset / f).read_bytes()).hexdigest()
        for f in files
    }
    sidecar = {"config": asdict(cfg), "sha256": sha}
    (out_dir / SIDECAR).write_text(json.dumps(sidecar, ensure_ascii=False, indent=1), encoding="utf-8")
    return out_dir
