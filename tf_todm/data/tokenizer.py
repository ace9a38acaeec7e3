"""SentencePiece tokenizer: trained with sentencepiece, run in Python and in-graph (tensorflow-text).

Id layout: `BLANK_ID` (0) is SentencePiece's `pad` with piece `<blk>`, id 1 is `<unk>`, no bos/eos.
The transducer's vocabulary size V is the model's piece count (blank included). Texts are expected
normalised (`tf_todm.data.text.normalize_text`); the model uses the `identity` normalisation rule
so Python and in-graph encodings, and `decode(encode(t)) == t`, hold exactly.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Iterable, Sequence

import sentencepiece as spm

from tf_todm.constants import BLANK_ID

UNK_ID = 1
BLANK_PIECE = "<blk>"
_TRAIN_LOCK = threading.Lock()


class TokenizerError(ValueError):
    """A text the tokenizer cannot represent, or a bad tokenizer file; message names where."""


def train_tokenizer(texts: Iterable[str], model_prefix: str, vocab_size: int, model_type: str = "unigram",
                    seed: int = 0) -> str:
    """Trains a SentencePiece model on `texts`; writes `<model_prefix>.model`, returns its path.

    Deterministic: one thread, fixed random seed, all sentences used (no sampling), so the same
    texts give the same model file bytes.
    """
    if model_type not in ("unigram", "bpe", "char", "word"):
        raise TokenizerError(f"train_tokenizer: model_type must be unigram|bpe|char|word, got {model_type!r}")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise TokenizerError("train_tokenizer: no non-empty training texts")
    if int(vocab_size) < 3:
        raise TokenizerError(f"train_tokenizer: vocab_size must be >= 3 (blank, unk, one piece), got {vocab_size}")
    os.makedirs(os.path.dirname(os.path.abspath(model_prefix)), exist_ok=True)
    with _TRAIN_LOCK:  # the random seed is process-global in sentencepiece
        spm.set_random_generator_seed(int(seed))
        try:
            model = io.BytesIO()  # in memory, so no output path is embedded in the model bytes
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=model, vocab_size=int(vocab_size),
                model_type=model_type, character_coverage=1.0, pad_id=BLANK_ID, pad_piece=BLANK_PIECE,
                unk_id=UNK_ID, bos_id=-1, eos_id=-1, normalization_rule_name="identity",
                num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
                max_sentence_length=1 << 16, minloglevel=2)
        except RuntimeError as e:
            msg = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
            raise TokenizerError(f"train_tokenizer({model_prefix!r}, vocab_size={vocab_size}): {msg}") from None
    path = model_prefix + ".model"
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(model.getvalue())
    os.replace(tmp, path)
    return path


# The normalised alphabet (`tf_todm.data.text.normalize_text`: a-z and ') as one extra training
# line, so that dev/test texts with a character the training texts lack still tokenise.
ALPHABET_LINE = " ".join("abcdefghijklmnopqrstuvwxyz'")


def load_or_train_tokenizer(path: str, texts: Iterable[str], vocab_size: int) -> "Tokenizer":
    """Loads the tokenizer at `path`, first training a `vocab_size`-piece model on `texts` (plus
    `ALPHABET_LINE`) when the file is missing. `path` must end in `.model`."""
    if not os.path.exists(path):
        if not path.endswith(".model"):
            raise TokenizerError(f"{path}: expected a tokenizer path ending in .model")
        from absl import logging
        logging.info("training a %d-piece tokenizer at %s", vocab_size, path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        train_tokenizer(list(texts) + [ALPHABET_LINE], path[:-len(".model")], vocab_size)
    return Tokenizer(path)


class Tokenizer:
    """A trained SentencePiece model.

    Args:
        model_path: path of a `.model` file written by `train_tokenizer` (blank id 0, unk id 1).
    """

    def __init__(self, model_path: str):
        if not os.path.isfile(model_path):
            raise TokenizerError(f"{model_path}: tokenizer model file does not exist")
        self.model_path = model_path
        with open(model_path, "rb") as f:
            self.model_proto = f.read()
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(self.model_proto)
        except RuntimeError:
            raise TokenizerError(f"{model_path}: not a SentencePiece model") from None
        if self._sp.pad_id() != BLANK_ID or self._sp.unk_id() != UNK_ID:
            raise TokenizerError(f"{model_path}: expected pad (blank) id {BLANK_ID} and unk id {UNK_ID}, "
                                 f"got pad {self._sp.pad_id()} and unk {self._sp.unk_id()}")

    @property
    def vocab_size(self) -> int:
        """V: number of pieces, blank included."""
        return self._sp.get_piece_size()

    def id_to_piece(self, i: int) -> str:
        return self._sp.id_to_piece(int(i))

    def encode(self, texts: Sequence[str] | str, check: bool = True) -> list[list[int]]:
        """Texts → ids (no blank, no bos/eos). With `check`, raises TokenizerError on unknown characters."""
        if isinstance(texts, str):
            texts = [texts]
        ids = self._sp.encode(list(texts), out_type=int)
        if check:
            for i, (text, row) in enumerate(zip(texts, ids)):
                if UNK_ID in row:
                    self.check_encodable(text, f"text #{i}")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Ids → text; blank ids (and anything out of range) are skipped."""
        n = self.vocab_size
        return self._sp.decode([int(i) for i in ids if int(i) != BLANK_ID and 0 <= int(i) < n])

    def decode_batch(self, batch: Iterable[Sequence[int]]) -> list[str]:
        return [self.decode(ids) for ids in batch]

    def unknown_characters(self, text: str) -> list[str]:
        """Characters of `text` (plain spaces excepted) that the model cannot encode, in first-seen
        order. Other whitespace (tab, newline, no-break space) is named too: SentencePiece maps it
        to unk, so it must be reported rather than silently skipped."""
        out = []
        for ch in dict.fromkeys(text):
            if ch != " " and (ch.isspace() or UNK_ID in self._sp.encode(ch, out_type=int)):
                out.append(ch)
        return out

    def check_encodable(self, text: str, where: str) -> None:
        """Raises TokenizerError naming `where` (e.g. 'train.jsonl:12') for empty text or unknown characters."""
        if not text or not text.strip():
            raise TokenizerError(f"{where}: empty text; every utterance needs a transcript")
        if UNK_ID not in self._sp.encode(text, out_type=int):
            return
        bad = self.unknown_characters(text)
        raise TokenizerError(f"{where}: character(s) {bad!r} not in the tokenizer's alphabet "
                             f"({os.path.basename(self.model_path)}); normalise the text or retrain the tokenizer")

    def tf_tokenize(self, strings):
        """In-graph tokenisation: tf.string `[B]` → `tf.RaggedTensor` int32 `[B, (U)]` (a scalar gives `[U]`).

        The SentencePiece resource is made in the calling graph (a tf.data map function, a
        tf.function) and so lives exactly as long as that graph's kernels. It is deliberately not
        created once eagerly and shared: tensorflow-text's resource is owned by the eager kernel
        cache, which `tf.random.set_seed` / `keras.utils.set_random_seed` / `clear_session` clear,
        after which every dataset holding the shared handle fails with "Resource
        localhost/_0_SentencepieceOp/... does not exist". So one `Tokenizer` serves any number of
        datasets and trainings in one process.
        """
        import tensorflow as tf
        import tensorflow_text as tf_text

        return tf_text.SentencepieceTokenizer(model=self.model_proto, out_type=tf.int32).tokenize(strings)
