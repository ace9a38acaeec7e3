"""The 500-example fuzz gate: property tests over every parser and pure function a user's data or a
search touches. Each property runs twice: ~50 examples in the default suite (`*_fast`) and 500
under `@pytest.mark.slow` (`*_500`). References are independent: a brute-force edit distance, a
number speller written here, whole-file manifests built line by line.

(The per-module property tests in tests/data, tests/models and tests/test_metrics.py check other
angles; this file adds whole-file manifests, round trips of arbitrary values, in-graph vs Python
tokenisation and randomly generated search spaces.)

Run the gate: `python -m pytest tests/test_fuzz.py -m slow --hypothesis-show-statistics`.
"""

from __future__ import annotations

import json
import os
import re
import string
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tf_todm.data.manifest import ManifestError, Utterance, read_manifest, write_manifest
from tf_todm.data.text import normalize_text
from tf_todm.data.tokenizer import Tokenizer, TokenizerError, train_tokenizer
from tf_todm.metrics import MetricInputError, wer, word_error_counts
from tf_todm.models.elastic_space import SearchSpace, SubnetConfig

FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GATE = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pair(prop, *strategies):
    """(fast test, 500-example slow test) of one property."""
    fast = FAST(given(*strategies)(prop))
    slow = pytest.mark.slow(GATE(given(*strategies)(prop)))
    return fast, slow


# ============================================================== manifests (whole files)

GOOD_RECORD = st.fixed_dictionaries(
    {"audio_filepath": st.text(alphabet=string.ascii_letters + string.digits + " _-./é", min_size=1,
                               max_size=20).filter(lambda p: p.strip("./ ") != ""),
     "duration": st.floats(1e-3, 1e4, allow_nan=False, allow_infinity=False),
     "text": st.text(max_size=30)},
    optional={"speaker": st.text(max_size=8), "domain": st.sampled_from(["open", "command", ""])})

BAD_LINE = st.one_of(
    st.just("{not json"),
    st.just("[1, 2, 3]"),
    st.just('"a string"'),
    st.just('{"audio_filepath": "a.wav", "duration": 1.0}'),                    # no text
    st.just('{"audio_filepath": "a.wav", "text": "x"}'),                        # no duration
    st.just('{"audio_filepath": "", "duration": 1.0, "text": "x"}'),
    st.sampled_from([0, -1.5, "1.0", True, None, "NaN"]).map(
        lambda d: json.dumps({"audio_filepath": "a.wav", "duration": d, "text": "x"})),
    st.sampled_from([1, None, ["a"]]).map(
        lambda t: json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": t})),
    st.just('{"audio_filepath": "a.wav", "duration": 1e999, "text": "x"}'),     # inf
    st.just('{"audio_filepath": "a.wav", "duration": 1.0, "text": "x", "speaker": 3}'),
)

LINE = st.one_of(GOOD_RECORD.map(lambda r: ("good", json.dumps(r, ensure_ascii=bool(len(r) % 2)))),
                 BAD_LINE.map(lambda s: ("bad", s)),
                 st.sampled_from(["", "   ", "\t"]).map(lambda s: ("blank", s)))


def prop_manifest_file(lines):
    """A whole JSONL file: all good -> every record back, resolved against the folder; otherwise
    ManifestError naming exactly `file:<first bad line>:`."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(text for _, text in lines) + "\n")
        first_bad = next((i for i, (kind, _) in enumerate(lines, 1) if kind == "bad"), None)
        goods = [json.loads(text) for kind, text in lines if kind == "good"]
        if first_bad is None and not goods:
            with pytest.raises(ManifestError, match=re.escape(f"{path}: manifest has no utterances")):
                read_manifest(path)
            return
        if first_bad is not None:
            with pytest.raises(ManifestError) as info:
                read_manifest(path)
            message = str(info.value)
            assert message.startswith(f"{path}:{first_bad}: "), message
            assert "\n" not in message
            return
        utterances = read_manifest(path)
        assert len(utterances) == len(goods)
        for u, r in zip(utterances, goods):
            assert u.audio_filepath == os.path.normpath(os.path.join(d, r["audio_filepath"]))
            assert u.duration == r["duration"] and u.text == r["text"]
            assert u.speaker == r.get("speaker", "") and u.domain == r.get("domain", "")


test_manifest_file_fast, test_manifest_file_500 = _pair(
    prop_manifest_file, st.lists(LINE, min_size=0, max_size=8))

UTTERANCE = st.builds(
    lambda name, duration, text, speaker, domain: (name, duration, text, speaker, domain),
    st.text(alphabet=string.ascii_letters + "é _-0123456789", min_size=1, max_size=12).filter(
        lambda s: s.strip(" ") == s and s not in (".", "..")),
    st.floats(1e-3, 1e4, allow_nan=False).map(lambda x: round(x, 4)).filter(lambda x: x > 0),
    st.text(max_size=40), st.text(max_size=6), st.text(max_size=6))


def prop_manifest_round_trip(items):
    """write_manifest -> read_manifest returns the same utterances (unicode text, odd file names)."""
    with tempfile.TemporaryDirectory() as d:
        utts = [Utterance(os.path.join(d, "sub", f"{i}_{name}.wav"), duration, text, speaker, domain)
                for i, (name, duration, text, speaker, domain) in enumerate(items)]
        path = os.path.join(d, "out.jsonl")
        write_manifest(path, utts)
        assert read_manifest(path) == utts
        assert sorted(os.listdir(d)) == ["out.jsonl"]  # no temp file left


test_manifest_round_trip_fast, test_manifest_round_trip_500 = _pair(
    prop_manifest_round_trip, st.lists(UTTERANCE, min_size=1, max_size=5))

# ============================================================== text normalisation

_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty",
         9: "ninety"}


def spell(n: int) -> str:
    """Reference speller (written independently): groups of three digits, no 'and'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + spell(n % 100))
    for power, name in ((12, "trillion"), (9, "billion"), (6, "million"), (3, "thousand")):
        unit = 10 ** power
        if n >= unit:
            head, rest = divmod(n, unit)
            return spell(head) + " " + name + ("" if rest == 0 else " " + spell(rest))
    raise AssertionError(n)


NORMAL = re.compile(r"^([a-z]+('[a-z]+)*( [a-z]+('[a-z]+)*)*)?$")
WORDS = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8), min_size=0, max_size=5)
PUNCT = st.text(alphabet=" \t\n.,;:!?\"()[]-/", min_size=1, max_size=3)


def prop_normalize(words, number, seps, noise):
    """Known words + an integer + punctuation -> exactly the words with the number spelled out;
    any text -> canonical form, idempotent, case-insensitive."""
    tokens = words[: len(words) // 2] + [str(number)] + words[len(words) // 2:]
    raw = "".join(t + seps[i % len(seps)] for i, t in enumerate(tokens))
    expected = " ".join(words[: len(words) // 2] + [spell(number)] + words[len(words) // 2:])
    assert normalize_text(raw) == expected
    assert normalize_text(raw.upper()) == expected
    out = normalize_text(noise)
    assert NORMAL.match(out), (noise, out)
    assert normalize_text(out) == out
    # Case-insensitive for ASCII letters (Unicode case maps change lengths: 'ß'.upper() == 'SS').
    assert normalize_text("".join(c.swapcase() if c.isascii() else c for c in noise)) == out


test_normalize_fast, test_normalize_500 = _pair(
    prop_normalize, WORDS, st.integers(0, 10 ** 15 - 1), st.lists(PUNCT, min_size=1, max_size=3),
    st.text(max_size=40))

# ============================================================== tokenizer

ALPHABET = "abcdefghijklmnopqrstuvwxyz'"
_TOKENIZER: list = []


def tokenizer() -> Tokenizer:
    """One real SentencePiece model (unigram, 40 pieces) shared by the tokenizer properties."""
    if not _TOKENIZER:
        d = tempfile.mkdtemp(prefix="fuzz_tok_")
        rng = np.random.default_rng(0)
        texts = [" ".join("".join(rng.choice(list(ALPHABET), rng.integers(1, 8))) for _ in range(6))
                 for _ in range(300)] + ["the quick brown fox jumps over the lazy dog's back"]
        _TOKENIZER.append(Tokenizer(train_tokenizer(texts, os.path.join(d, "tok"), 40)))
    return _TOKENIZER[0]


TOKEN_TEXT = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=10), min_size=1, max_size=8)
SPACES = st.lists(st.sampled_from([" ", "  ", "   "]), min_size=1, max_size=3)


def prop_tokenizer(batch, spaces, bad_char):
    """decode(encode(t)) == t (single spaces), batch == per item, in-graph == Python, and a character
    outside the alphabet raises TokenizerError naming it."""
    tok = tokenizer()
    texts = [" ".join(words) for words in batch]
    ids = tok.encode(texts)
    for text, row in zip(texts, ids):
        assert tok.decode(row) == text
        assert all(0 < i < tok.vocab_size for i in row)  # never blank, never out of range
        assert tok.encode(text)[0] == row
    spaced = spaces[0].join(texts[0].split(" "))  # extra whitespace between words
    assert tok.decode(tok.encode(spaced)[0]) == texts[0]
    graph = tok.tf_tokenize(np.array(texts, dtype=object))
    assert graph.to_list() == ids
    bad = texts[0] + " x" + bad_char + "y"
    with pytest.raises(TokenizerError, match=re.escape(repr(bad_char))):
        tok.encode(bad)


test_tokenizer_fast, test_tokenizer_500 = _pair(
    prop_tokenizer, st.lists(TOKEN_TEXT, min_size=1, max_size=4), SPACES,
    st.characters(blacklist_characters=ALPHABET + "\x00",
                  blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs", "Cn", "Co", "Mn", "Cf")))


@pytest.mark.parametrize("space", ["\t", "\n", "\u00a0"])
def test_tokenizer_other_whitespace_round_trips_or_is_named(space):
    tok = tokenizer()
    try:
        ids = tok.encode(f"ab{space}ba")[0]
    except TokenizerError as e:
        assert repr(space) in str(e), str(e)
    else:
        assert tok.decode(ids) == "ab ba"

# ============================================================== WER


def edit_distance(a, b) -> int:
    """Brute-force Levenshtein by memoised recursion over suffixes (unit costs)."""
    memo = {}

    def d(i, j):
        if (i, j) not in memo:
            if i == len(a):
                memo[i, j] = len(b) - j
            elif j == len(b):
                memo[i, j] = len(a) - i
            else:
                memo[i, j] = min(d(i + 1, j) + 1, d(i, j + 1) + 1, d(i + 1, j + 1) + (a[i] != b[j]))
        return memo[i, j]

    return d(0, 0)


WER_WORD = st.sampled_from(["a", "the", "cat", "café", "ab", "b", "don't", "z"])
SENT = st.lists(WER_WORD, max_size=7)
SPACING = st.sampled_from([" ", "  ", "\t", " \n"])


def prop_wer(pairs, spacing):
    """Corpus WER == sum of brute-force edit distances / reference words (whitespace-insensitive);
    order of pairs irrelevant; counts add up; an all-empty reference corpus raises."""
    refs = [spacing.join(r) for r, _ in pairs]
    hyps = [spacing.join(h) + spacing for _, h in pairs]
    total = sum(len(r) for r, _ in pairs)
    if total == 0:
        with pytest.raises(MetricInputError):
            wer(refs, hyps)
        return
    expected = sum(edit_distance(r, h) for r, h in pairs) / total
    assert wer(refs, hyps) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert wer(refs[::-1], hyps[::-1]) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    counts = word_error_counts(refs, hyps)
    assert counts.errors == sum(edit_distance(r, h) for r, h in pairs)
    assert counts.reference_units == total
    assert counts.insertions - counts.deletions == sum(len(h) - len(r) for r, h in pairs)


test_wer_fast, test_wer_500 = _pair(prop_wer, st.lists(st.tuples(SENT, SENT), min_size=1, max_size=5), SPACING)

# ============================================================== SubnetConfig / SearchSpace

CHOICES = st.lists(st.integers(1, 64), min_size=1, max_size=4, unique=True)


@st.composite
def space_and_configs(draw):
    """A random SearchSpace and two configs drawn from it by hypothesis (not by `sample`)."""
    space = SearchSpace(
        draw(st.lists(st.integers(1, 6), min_size=1, max_size=3, unique=True)), draw(CHOICES), draw(CHOICES),
        draw(CHOICES), draw(CHOICES), draw(CHOICES))

    def config():
        n = draw(st.sampled_from(space.num_blocks_choices))
        per = lambda choices: tuple(draw(st.lists(st.sampled_from(choices), min_size=n, max_size=n)))  # noqa: E731
        return SubnetConfig(n, per(space.ff_dim_choices), per(space.num_heads_choices),
                            per(space.conv_dim_choices), draw(st.sampled_from(space.predictor_dim_choices)),
                            draw(st.sampled_from(space.joiner_dim_choices)))

    return space, config(), config()


def prop_subnet_space(space_configs, seed, prob):
    """JSON round trips (config, space), stable keys, and evolution operators stay in the space and
    take every gene from a parent (crossover) or the space (mutate); prob=0 mutation is identity."""
    space, a, b = space_configs
    for c in (a, b):
        text = json.dumps(json.loads(c.to_json()))
        again = SubnetConfig.from_json(text)
        assert again == c and again.key() == c.key() and hash(again) == hash(c)
        assert SubnetConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
        assert space.contains(c)
    assert (a.key() == b.key()) == (a == b)
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    with pytest.raises(ValueError, match="unknown keys"):
        SubnetConfig.from_dict({**a.to_dict(), "extra": 1})
    rng = np.random.default_rng(seed)
    assert space.mutate(a, rng, prob=0.0) == a
    mutant = space.mutate(a, rng, prob=prob)
    space.validate(mutant)
    child = space.crossover(a, b, rng)
    space.validate(child)
    assert child.num_blocks in (a.num_blocks, b.num_blocks)
    for field in ("ff_dims", "num_heads", "conv_dims"):
        for i, gene in enumerate(getattr(child, field)):
            options = [getattr(p, field)[i] for p in (a, b) if i < p.num_blocks]
            assert gene in options, (field, i, gene, options)
    assert child.predictor_dim in (a.predictor_dim, b.predictor_dim)
    assert child.joiner_dim in (a.joiner_dim, b.joiner_dim)
    assert space.contains(space.largest()) and space.contains(space.smallest())


test_subnet_space_fast, test_subnet_space_500 = _pair(
    prop_subnet_space, space_and_configs(), st.integers(0, 2 ** 32 - 1), st.floats(0.0, 1.0))
