"""A small Qwen2-style byte-level BPE tokenizer with ChatML, trained offline.

No hub is reachable, so tiny chat models get a tokenizer trained in-process on a short corpus. It
is saved as an ordinary ``Qwen2Tokenizer`` folder, so ``AutoTokenizer.from_pretrained(dir)`` and
``apply_chat_template`` follow the same path as for real Qwen checkpoints. Byte-level BPE covers
every input (any UTF-8 text tokenizes), so Chinese and English both work.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

if TYPE_CHECKING:
    from transformers import Qwen2Tokenizer

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# ChatML as Qwen2/Qwen2.5 write it, without a default system prompt. Content is a string or a list
# of {"type": "text", "text": ...} parts, as OpenAI-style clients send it.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}{{- message['content'] }}"
    "{%- else %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Mixed English/Chinese text with chat-like phrasing, so merges cover both scripts.
CORPUS = [
    "Hello! How can I help you today?",
    "The quick brown fox jumps over the lazy dog.",
    "Please summarize the following text in one sentence.",
    "What is the weather like in Beijing tomorrow?",
    "Machine learning models learn patterns from data.",
    "Ray Serve scales model inference across many GPUs.",
    "Translate this sentence into Chinese, please.",
    "The answer is 42, and the question is unknown.",
    "你好！今天我能帮你做什么？",
    "请用一句话总结下面的内容。",
    "明天北京的天气怎么样？",
    "机器学习模型从数据中学习规律。",
    "语音识别把声音转换成文字，语音合成把文字变成声音。",
    "这张图片里有一只猫和一只狗。",
    "我们在多个显卡上部署大语言模型服务。",
    "请把这句话翻译成英文，谢谢。",
    "Qwen 是一个大语言模型 (large language model)。",
    "User: 你好 Assistant: Hello, 很高兴见到你!",
    "system user assistant: You are a helpful assistant. 你是一个乐于助人的助手。",
    "Numbers 0 1 2 3 4 5 6 7 8 9, punctuation: , . ! ? ; : ( ) [ ] { } \" ' - _ / \\ \n\t",
]

# Qwen2's pre-tokenizer split; training with the same split keeps merges valid at load time.
_PRETOKENIZE = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def build_chatml_tokenizer(
    out_dir: Path,
    *,
    corpus: Sequence[str] = CORPUS,
    vocab_size: int = 1024,
    extra_special_tokens: Sequence[str] | Mapping[str, str] = (),
    chat_template: str = CHATML_TEMPLATE,
    model_max_length: int = 32768,
) -> Qwen2Tokenizer:
    """Train a byte-level BPE on ``corpus`` and save it as a Qwen2Tokenizer folder in ``out_dir``.

    ``extra_special_tokens`` are never split and are skipped when decoding; a mapping names them
    (e.g. ``{"context_image_token": "<IMG_CONTEXT>"}``), which processors such as InternVL's read
    as tokenizer attributes (``tokenizer.context_image_token_id``). Returns the loaded tokenizer;
    ``len(tokenizer)`` is the smallest vocabulary a model built for it may have.
    """
    from transformers import Qwen2Tokenizer

    named = dict(extra_special_tokens) if isinstance(extra_special_tokens, Mapping) else {}
    extras = list(named.values()) if named else list(extra_special_tokens)
    specials = [ENDOFTEXT, IM_START, IM_END, *extras]

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]

    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]],
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        extra_special_tokens=named or None,
        model_max_length=model_max_length,
    )
    tokenizer.add_special_tokens({"extra_special_tokens": [IM_START, IM_END, *extras]})
    tokenizer.chat_template = chat_template
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_t5_tokenizer(folder: Path, corpus, *, vocab_size: int = 200, **kwargs):
    """A T5 tokenizer from a sentencepiece unigram model trained in memory (T5's id layout:
    pad 0, eos 1, unk 2, no bos). spiece.model stays in `folder`, as in real T5 folders.

    `T5TokenizerFast(vocab_file=...)` ignores the file in transformers 5.x; from_pretrained reads it.
    """
    import io

    import sentencepiece as spm
    from transformers import T5TokenizerFast

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus)), model_writer=model, model_type="unigram", vocab_size=vocab_size,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    return T5TokenizerFast.from_pretrained(folder, extra_ids=0, **kwargs)
