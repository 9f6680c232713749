"""A word-level tokenizer built from a local vocabulary, for tiny test models and the toy world.

Nothing can be downloaded here, so the tiny models cannot use CLIP's BPE vocabulary. A word-level
`tokenizers` model wrapped in a transformers fast tokenizer behaves like CLIP's for everything LiVO
relies on: ``<bos> words <eos>`` then padding to a fixed length, truncation that keeps the end token,
``save_pretrained`` / ``AutoTokenizer.from_pretrained``. Its padding id differs from the end id, and
the end id is never 2, so ``CLIPTextModel`` pools the first end token (with ``eos_token_id == 2``
it silently falls back to a legacy argmax over ids).

A tokenizer that maps every word to one id (an empty or mismatched vocabulary) trains a model that
ignores its prompt without any error; :func:`check_vocabulary` refuses such a tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from livo.errors import ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
UNK_TOKEN = "<|unk|>"
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN)

# Words of the default tiny vocabulary: enough for the value principles and simple prompts in tests.
DEFAULT_WORDS = (
    "a",
    "an",
    "the",
    "photo",
    "of",
    "portrait",
    "picture",
    ",",
    ".",
    "doctor",
    "nurse",
    "teacher",
    "engineer",
    "person",
    "man",
    "woman",
    "male",
    "female",
    "cat",
    "dog",
    "ball",
    "tree",
    "house",
    "in",
    "on",
    "with",
    "park",
    "city",
    "street",
    "bloody",
    "zombie",
    "horror",
    "blood",
    "nude",
    "happy",
    "sad",
    "smiling",
    "gender",
    "racial",
    "equality",
    "content",
    "is",
    "considered",
    "inappropriate",
)


def build_word_tokenizer(words: Iterable[str] = DEFAULT_WORDS, max_length: int = 16) -> PreTrainedTokenizerFast:
    """Return a fast tokenizer over ``words`` (lower-cased; punctuation is split off as its own
    word) with ids: 0 start, 1 end, 2 padding, 3 unknown, then the words in the given order.

    ``max_length`` becomes ``model_max_length``: the sequence length the text encoder sees.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if max_length < 3:
        raise ConfigError(f"max_length: must be at least 3 (start, one word, end), got {max_length}")
    vocab: dict[str, int] = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in words:
        word = word.strip().lower()
        if not word or any(ch.isspace() for ch in word):
            raise ConfigError(f"words: {word!r} is not a single word")
        vocab.setdefault(word, len(vocab))
    if len(vocab) == len(SPECIAL_TOKENS):
        raise ConfigError("words: the vocabulary is empty")

    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK_TOKEN))
    backend.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A {EOS_TOKEN}",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN]), (EOS_TOKEN, vocab[EOS_TOKEN])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=max_length,
    )
    check_vocabulary(tokenizer, [w for w in vocab if w not in SPECIAL_TOKENS])
    return tokenizer


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, words: Sequence[str]) -> None:
    """Raise :class:`ConfigError` unless ``words`` map to distinct, known ids and the special ids
    are distinct: the guard against a tokenizer that silently maps every word to one id."""
    if len(words) < 2:
        raise ConfigError(f"words: need at least two words to check a vocabulary, got {list(words)}")
    unk = tokenizer.unk_token_id
    ids: dict[int, str] = {}
    for word in words:
        word_ids = tokenizer(word, add_special_tokens=False).input_ids
        if len(word_ids) != 1 or word_ids[0] == unk:
            raise ConfigError(f"tokenizer: word {word!r} maps to {word_ids}, not one known id")
        if word_ids[0] in ids:
            raise ConfigError(
                f"tokenizer: words {ids[word_ids[0]]!r} and {word!r} share id {word_ids[0]}; the vocabulary is not real"
            )
        ids[word_ids[0]] = word
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    if bos is None or eos is None or pad is None or bos == eos:
        raise ConfigError(
            "tokenizer: start, end and padding ids must exist and start must differ from end, got "
            f"bos={bos} eos={eos} pad={pad}"
        )
