"""The word-level tokenizer of the embedded models.

The embedded models read short template captions, so a word-level vocabulary
is enough. It is a real ``tokenizers`` model wrapped in
``PreTrainedTokenizerFast``, so it saves beside the checkpoint and reloads
offline with ``AutoTokenizer.from_pretrained(path)``, like any hub tokenizer.
"""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from . import shapes

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "<|startoftext|>", "<|endoftext|>"
# The end-of-text id must not be 2: CLIPTextModel treats eos_token_id == 2 as a
# legacy configuration and then pools at the largest token id instead.
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)

DIGIT_NAMES: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
)
_FUNCTION_WORDS: tuple[str, ...] = ("a", "an", "and", "on", "the", "of", "handwritten", "digit", "photo")

# Maximum caption length in tokens, start and end tokens included. Longer text is truncated.
MAX_LENGTH = 16


def caption_words() -> list[str]:
    """Return the vocabulary words (without special tokens), in a fixed order."""
    words: list[str] = []
    for group in (_FUNCTION_WORDS, shapes.SHAPES, tuple(shapes.COLOURS), shapes.SIZES, shapes.POSITIONS, DIGIT_NAMES):
        words.extend(word for word in group if word not in words)
    return words


def build_tokenizer(words: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Build the word-level caption tokenizer.

    Text is lower-cased and split on whitespace and punctuation; each caption
    becomes ``<|startoftext|> words... <|endoftext|>``, padded on the right
    with ``[PAD]``. Words outside the vocabulary map to ``[UNK]``.
    """
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for word in words if words is not None else caption_words():
        vocab.setdefault(word, len(vocab))

    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}",
        special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=MAX_LENGTH,
        padding_side="right",
    )
