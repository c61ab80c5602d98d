"""Train the embedded family's byte-level BPE tokenizer and wrap it for `transformers`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from audit.models.chat_template import BOS, CHAT_TEMPLATE, END, PAD, SPECIAL_TOKENS

DEFAULT_VOCAB_SIZE = 3072
MODEL_MAX_LENGTH = 1024

_SPECIAL_SPLIT = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    min_frequency: int = 2,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on `texts` (rendered conversations) with the chat template.

    Control tokens get ids 0-8 in `SPECIAL_TOKENS` order and are never merged with text; any byte
    string encodes, and `decode(encode(text))` gives `text` back. The result has `<|bos|>`,
    `<|end|>` (eos, the end of every turn) and `<|pad|>` set, left padding for generation, and
    saves and loads with `save_pretrained` / `AutoTokenizer.from_pretrained`.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(token, normalized=False, special=True) for token in SPECIAL_TOKENS]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_text_pieces(texts), trainer=trainer)
    return wrap_tokenizer(backend)


def wrap_tokenizer(backend: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a trained `tokenizers.Tokenizer` with the control tokens and chat template set."""
    missing = [token for token in SPECIAL_TOKENS if backend.token_to_id(token) is None]
    if missing:
        raise ValueError(f"tokenizer lacks control tokens: {', '.join(missing)}")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (BOS, END, PAD)],
        padding_side="left",
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _text_pieces(texts: Iterable[str]) -> Iterator[str]:
    """The text between control tokens, so merges never span or imitate a control token."""
    for text in texts:
        for piece in _SPECIAL_SPLIT.split(text):
            if piece:
                yield piece
