"""Tests for tf_todm.data.text (normalisation, number words, fortunes reader) and the command grammar."""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tf_todm.data.commands import command_sentences, sample_command, spoken_time
from tf_todm.data.text import (FortuneError, TextError, expand_abbreviations, fold_to_ascii_letters, fortune_sentences,
                               normalize_text, number_to_words, ordinal_to_words, read_fortune_entries,
                               split_sentences)

_ALLOWED = re.compile(r"^([a-z]+('[a-z]+)*( [a-z]+('[a-z]+)*)*)?$")


@pytest.mark.parametrize("raw, expected", [
    ("Hello, World!", "hello world"),
    ("It's 42, isn't it?", "it's forty two isn't it"),
    ("  lots   of\tspace\n", "lots of space"),
    ("On the 3rd of May", "on the third of may"),
    ("2.5% up", "two point five percent up"),
    ("1,000,000 and 007", "one million and zero zero seven"),
    ("Naïve café", "naive cafe"),
    ("'quoted' dogs' bones -- well-known", "quoted dogs bones well known"),
    ("rock & roll", "rock and roll"),
    ("mp3", "mp three"),
    ("", ""),
    ("?!.,", ""),
])
def test_normalize_examples(raw, expected):
    assert normalize_text(raw) == expected


def _words_reference(n):
    # Independent reference: the classic recursive definition (no tables shared with the module).
    small = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
             "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
    tens = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty", 9: "ninety"}
    if n < 20:
        return small[n]
    if n < 100:
        return tens[n // 10] + ("" if n % 10 == 0 else " " + small[n % 10])
    if n < 1000:
        return small[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + _words_reference(n % 100))
    for value, name in ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= value:
            return _words_reference(n // value) + " " + name + ("" if n % value == 0 else " " + _words_reference(n % value))


@given(st.integers(min_value=0, max_value=10**15 - 1))
@settings(max_examples=300, deadline=None)
def test_number_to_words_matches_reference(n):
    assert number_to_words(n) == _words_reference(n)
    assert normalize_text(str(n)) == _words_reference(n)


@pytest.mark.parametrize("n, expected", [(1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (8, "eighth"),
                                         (9, "ninth"), (12, "twelfth"), (20, "twentieth"), (21, "twenty first"),
                                         (40, "fortieth"), (100, "one hundredth"), (1000, "one thousandth")])
def test_ordinals(n, expected):
    assert ordinal_to_words(n) == expected


@given(st.text(max_size=80))
@settings(max_examples=400, deadline=None)
def test_normalize_properties(s):
    out = normalize_text(s)
    assert _ALLOWED.match(out), out
    assert "  " not in out and out == out.strip()
    assert normalize_text(out) == out


@given(st.text(alphabet=st.sampled_from("aZ9' .,-!?\t\n%&é’"), max_size=60))
@settings(max_examples=400, deadline=None)
def test_normalize_properties_on_tricky_alphabet(s):
    out = normalize_text(s)
    assert _ALLOWED.match(out), out
    assert normalize_text(out) == out


def test_fortune_file_reader(tmp_path):
    d = tmp_path / "fortunes"
    d.mkdir()
    (d / "wisdom").write_text(
        "A fool and his money are soon parted. Look before you leap!\n"
        "\t\t-- Old Proverb\n%\nShort.\n%\n"
        "It is 9 o'clock; the 2 of us were late again.\n%\n"
        "A fool and his money are soon parted.\n%\n"
        + " ".join(["word"] * 25) + ".\n%\n"
        "Dr. Smith met Mr. Jones at 5. IBM sells many PCs today.\n%\nDON'T PANIC, SAID THE BOOK.\n%\n")
    (d / "wisdom.dat").write_bytes(b"\x00binary")
    (d / "art").write_text("  /\\_/\\  ( o.o ) > ^ < cats are here\n%\n")
    entries = read_fortune_entries(str(d / "wisdom"))
    assert entries[0] == "A fool and his money are soon parted. Look before you leap!"
    assert split_sentences(entries[0]) == ["A fool and his money are soon parted.", "Look before you leap!"]
    assert fortune_sentences(str(d)) == ["a fool and his money are soon parted", "look before you leap",
                                         "it is nine o'clock the two of us were late again",
                                         "doctor smith met mister jones at five", "don't panic said the book"]


def test_expand_abbreviations():
    assert expand_abbreviations("Dr. Who met Mr. X, e.g. here.") == "doctor Who met mister X, for example here."
    assert expand_abbreviations("Drive on. Stop at the first st. Now.") == "Drive on. Stop at the first saint Now."


def test_fortunes_missing_folder(tmp_path):
    with pytest.raises(FortuneError, match="does not exist"):
        fortune_sentences(str(tmp_path / "nope"))


def test_installed_fortunes_give_many_clean_sentences():
    sentences = fortune_sentences()
    assert len(sentences) > 10000
    assert len(set(sentences)) == len(sentences)
    assert all(_ALLOWED.match(s) and 3 <= len(s.split()) <= 20 for s in sentences)


# ----------------------------------------------------------------------------- commands

@pytest.mark.parametrize("hour, minute, expected", [(7, 30, "seven thirty a m"), (12, 5, "twelve oh five p m"),
                                                    (0, 0, "twelve a m"), (19, 45, "seven forty five p m")])
def test_spoken_time(hour, minute, expected):
    assert spoken_time(hour, minute) == expected


def test_commands_deterministic_distinct_and_normalised():
    a = command_sentences(11, 3001)
    assert a == command_sentences(11, 3001)
    assert a != command_sentences(12, 3001)
    assert len(set(a)) == 3001
    assert all(normalize_text(s) == s and s for s in a)
    starts = {s.split()[0] for s in a}
    assert {"set", "call", "text", "remind", "play", "wake"} <= starts | {w for s in a for w in s.split()[:3]}
    joined = " ".join(a)
    for needle in ("timer for", "a m", "p m", "remind me on", "call", "text", "weather", "volume", "percent"):
        assert needle in joined, needle
    assert np.mean([len(s.split()) for s in a]) > 4


def test_command_grammar_is_large():
    sentences = command_sentences(0, 10000)
    assert len(set(sentences)) == 10000
    rng = np.random.default_rng(5)
    assert sample_command(rng) != sample_command(rng)


@pytest.mark.parametrize("raw, expected", [
    ("straße", "strasse"),
    ("STRASSE", "strasse"),
    ("Stra\u1e9eE", "strasse"),  # capital sharp s
    ("\ufb01ne \ufb02our \ufb00", "fine flour ff"),  # ligatures fi, fl, ff
    ("Æsop's œuvre", "aesop's oeuvre"),
    ("Søren Ærø", "soren aero"),
    ("Łódź", "lodz"),
    ("Þórr Đorđe", "thorr dorde"),
    ("Crème brûlée, jalapeño, Ångström", "creme brulee jalapeno angstrom"),
    ("l\u2018homme d\u02bcart", "l'homme d'art"),
    ("Москва rocks", "rocks"),  # not Latin: a word separator (strict mode names it instead)
])
def test_normalize_folds_latin_letters(raw, expected):
    out = normalize_text(raw)
    assert out == expected
    assert _ALLOWED.match(out) and normalize_text(out) == out


def test_normalize_strict_names_letters_outside_latin():
    assert normalize_text("Straße Ærø café", strict=True) == "strasse aero cafe"
    with pytest.raises(TextError, match=r"^character\(s\) 'м' \(CYRILLIC SMALL LETTER EM\), 'о' .*a-z"):
        normalize_text("Москва rocks", strict=True)
    with pytest.raises(TextError, match="GREEK SMALL LETTER ALPHA"):
        normalize_text("α particles", strict=True)


def test_fold_every_latin_letter_to_ascii():
    """Brute force over Latin-1 Supplement and Latin Extended-A: every letter whose name says
    LATIN folds to plain a-z letters."""
    import unicodedata
    for code in range(0xC0, 0x180):
        c = chr(code)
        if c.isalpha() and "LATIN" in unicodedata.name(c, ""):
            folded = fold_to_ascii_letters(c)
            assert folded and all("a" <= x <= "z" for x in folded), (c, unicodedata.name(c), folded)
