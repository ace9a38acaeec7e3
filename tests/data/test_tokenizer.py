"""Tokenizer on real SentencePiece models trained from normalised `fortunes` sentences."""
import os

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.data.text import fortune_sentences, normalize_text
from tf_todm.data.tokenizer import UNK_ID, Tokenizer, TokenizerError, load_or_train_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def texts():
    out = [normalize_text(s) for s in fortune_sentences()[:600]]
    out = [t for t in out if t]
    assert len(out) > 300
    return out


@pytest.fixture(scope="module")
def tokenizer(texts, tmp_path_factory):
    return Tokenizer(train_tokenizer(texts, str(tmp_path_factory.mktemp("spm") / "tok"), vocab_size=97))


def test_id_layout(tokenizer):
    assert tokenizer.vocab_size == 97
    assert BLANK_ID == 0 and tokenizer.id_to_piece(BLANK_ID) == "<blk>"
    assert tokenizer.id_to_piece(UNK_ID) == "<unk>"


def test_training_is_deterministic(texts, tmp_path):
    a = train_tokenizer(texts, str(tmp_path / "a" / "tok"), 61)
    b = train_tokenizer(texts, str(tmp_path / "b" / "other_name"), 61)
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read()
    c = train_tokenizer(texts[:-40], str(tmp_path / "c"), 61)
    with open(a, "rb") as fa, open(c, "rb") as fc:
        assert fa.read() != fc.read()  # the comparison can fail


def test_encode_decode_round_trip_on_corpus(tokenizer, texts):
    ids = tokenizer.encode(texts)
    assert len(ids) == len(texts)
    for text, row in zip(texts, ids):
        assert row and BLANK_ID not in row and UNK_ID not in row
        assert all(0 < i < tokenizer.vocab_size for i in row)
        assert tokenizer.decode(row) == text
    assert tokenizer.decode([BLANK_ID] + ids[0] + [BLANK_ID, BLANK_ID]) == texts[0]
    assert tokenizer.encode(texts[3]) == [ids[3]]


def test_tf_tokenize_matches_python_encode(tokenizer, texts):
    sample = texts[:50] + ["zzz qqq", "a"]
    ragged = tokenizer.tf_tokenize(tf.constant(sample))
    assert isinstance(ragged, tf.RaggedTensor) and ragged.dtype == tf.int32
    assert ragged.to_list() == tokenizer.encode(sample)
    # In a graph (tf.data map), one string at a time, as the pipeline uses it.
    ds = tf.data.Dataset.from_tensor_slices(sample).map(tokenizer.tf_tokenize)
    assert [x.numpy().tolist() for x in ds] == tokenizer.encode(sample)


def test_check_encodable_names_where(tokenizer):
    tokenizer.check_encodable("hello world", "train.jsonl:1")
    with pytest.raises(TokenizerError, match=r"^dev.jsonl:7: character\(s\) \['Ω', '#'\]"):
        tokenizer.check_encodable("an Ω sign # here", "dev.jsonl:7")
    with pytest.raises(TokenizerError, match=r"^dev.jsonl:8: empty text"):
        tokenizer.check_encodable("   ", "dev.jsonl:8")
    with pytest.raises(TokenizerError, match=r"text #1: character"):
        tokenizer.encode(["fine", "not fine ★"])
    assert UNK_ID in tokenizer.encode(["not fine ★"], check=False)[0]
    assert issubclass(TokenizerError, ValueError)


def test_bpe_and_bad_arguments(texts, tmp_path):
    bpe = Tokenizer(train_tokenizer(texts, str(tmp_path / "bpe"), 71, model_type="bpe"))
    assert bpe.vocab_size == 71 and bpe.decode(bpe.encode(texts[5])[0]) == texts[5]
    with pytest.raises(TokenizerError, match="no non-empty"):
        train_tokenizer(["", "  "], str(tmp_path / "x"), 10)
    with pytest.raises(TokenizerError, match="vocab_size=100000"):
        train_tokenizer(texts[:20], str(tmp_path / "y"), 100000)
    with pytest.raises(TokenizerError, match="does not exist"):
        Tokenizer(str(tmp_path / "missing.model"))


WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", min_size=1, max_size=9)


@hypothesis.settings(max_examples=150, deadline=None)
@hypothesis.given(words=st.lists(WORD, min_size=1, max_size=12))
def test_round_trip_property(tokenizer, words):
    text = " ".join(words)
    ids = tokenizer.encode(text)[0]
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(np.array(ids, np.int32)) == text


def test_tf_tokenize_survives_kernel_cache_clears(tokenizer, texts):
    """tf.random.set_seed clears TF's eager kernel cache (regression: it deleted the shared
    SentencePiece resource); eager calls and tf.functions must keep working across it."""
    strings = tf.constant(texts[:3])
    expected = tokenizer.encode(texts[:3])
    fn = tf.function(tokenizer.tf_tokenize)
    for seed in (3, 4):
        assert tokenizer.tf_tokenize(strings).to_list() == expected
        assert fn(strings).to_list() == expected
        tf.random.set_seed(seed)
    assert tokenizer.tf_tokenize(strings).to_list() == expected and fn(strings).to_list() == expected


def test_load_or_train_tokenizer_trains_once_then_loads(texts, tmp_path):
    path = str(tmp_path / "sub" / "tok.model")
    tok = load_or_train_tokenizer(path, texts[:200], vocab_size=53)
    assert tok.vocab_size == 53 and tok.model_path == path
    # The whole normalised alphabet is encodable even when the training texts lack a letter.
    assert tok.unknown_characters("abcdefghijklmnopqrstuvwxyz'") == []
    with open(path, "rb") as f:
        first_bytes = f.read()
    mtime = os.stat(path).st_mtime_ns
    again = load_or_train_tokenizer(path, ["completely different texts"], vocab_size=9)
    assert again.vocab_size == 53 and os.stat(path).st_mtime_ns == mtime
    with open(path, "rb") as f:
        assert f.read() == first_bytes
    with pytest.raises(TokenizerError, match=r"tok\.bin: expected a tokenizer path ending in \.model"):
        load_or_train_tokenizer(str(tmp_path / "tok.bin"), texts, vocab_size=53)


def test_load_or_train_tokenizer_covers_letters_missing_from_the_texts(tmp_path):
    tok = load_or_train_tokenizer(str(tmp_path / "t.model"), ["hello world"] * 5, vocab_size=32)
    assert tok.unknown_characters("quiz jack's") == []
    assert tok.decode(tok.encode("quiz jack's")[0]) == "quiz jack's"
