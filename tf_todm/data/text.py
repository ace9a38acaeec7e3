"""Transcript normalisation and the Debian `fortunes` sentence reader.

Normalised text is lower-case words over `a-z` and `'`, separated by single spaces: digits are
spelled out ("42" -> "forty two", "3rd" -> "third", "2.5" -> "two point five"), and Latin letters
are folded to a-z: full Unicode case folding ("Straße" -> "strasse"), compatibility decomposition
with accents dropped ("naïve" -> "naive", the ligature "ﬁ" -> "fi") and a table for letters with no
decomposition ("æ" -> "ae", "œ" -> "oe", "ø" -> "o", "ł" -> "l", "þ" -> "th", "đ"/"ð" -> "d").
Letters of other scripts (Greek, Cyrillic, CJK, ...) cannot be written in a-z: by default they are
word separators like every other character (so they vanish); with `strict=True`, `TextError`
names them. An apostrophe survives only between two letters ("don't"), so quotes vanish and the
function is idempotent.
"""

from __future__ import annotations

import os
import re
import unicodedata

ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen").split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth",
                      "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_MAX_CARDINAL = 10**15

_SYMBOL_WORDS = {"%": " percent ", "&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "$": " dollars "}
_ORDINAL_RE = re.compile(r"(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
_DECIMAL_RE = re.compile(r"(\d+)\.(\d+)")
_DIGITS_RE = re.compile(r"\d+")
_DIGIT_GROUPING_RE = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NON_WORD_RE = re.compile(r"[^a-z']+")


def _below_thousand(n: int) -> list[str]:
    words = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(TENS[n // 10])
        n %= 10
        if n:
            words.append(ONES[n])
    elif n or not words:
        words.append(ONES[n])
    return words


def number_to_words(n: int) -> str:
    """Cardinal number in words: 0 -> "zero", 2025 -> "two thousand twenty five".

    Numbers >= 10**15 are read digit by digit.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= _MAX_CARDINAL:
        return " ".join(ONES[int(d)] for d in str(n))
    if n < 1000:
        return " ".join(_below_thousand(n))
    words = []
    for value, name in SCALES:
        if n >= value:
            words += _below_thousand(n // value) + [name]
            n %= value
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """Ordinal number in words: 1 -> "first", 23 -> "twenty third", 40 -> "fortieth"."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join(words[:-1] + [last])


def _digit_string_to_words(digits: str) -> str:
    # Leading zeros ("007") are read digit by digit, as people say them.
    if len(digits) > 1 and digits.startswith("0"):
        return " ".join(ONES[int(d)] for d in digits)
    return number_to_words(int(digits))


# Latin letters that neither case folding nor NFKD turn into a-z (after casefold: lower case).
_LATIN_FOLDS = str.maketrans({"æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ł": "l",
                              "ı": "i", "ȷ": "j", "ħ": "h", "ŋ": "ng", "ŧ": "t", "ƀ": "b", "ɨ": "i", "ĸ": "q"})
# Letters whose case folding or NFKD form holds a non-letter ("ŀ" -> "l·", "ŉ" -> "ʼn").
_BEFORE_DECOMPOSITION = str.maketrans({"Ŀ": "L", "ŀ": "l", "ŉ": "n"})
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


class TextError(ValueError):
    """Text that cannot be normalised to a-z (strict mode); the message names the characters."""


def _strip_accents(s: str) -> str:
    decomposed = unicodedata.normalize("NFKD", s)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def fold_to_ascii_letters(s: str) -> str:
    """Case-folds and folds Latin letters to a-z: "Straße Ærø ﬁne" -> "strasse aero fine".
    Characters that are not Latin letters are returned unchanged."""
    return _strip_accents(s.translate(_BEFORE_DECOMPOSITION).casefold()).translate(_LATIN_FOLDS)


def normalize_text(s: str, strict: bool = False) -> str:
    """Normalises a transcript to lower-case `[a-z']` words separated by single spaces.

    `strict`: raise `TextError` naming the letters that cannot be written in a-z (e.g. Cyrillic)
    instead of treating them as word separators.

    >>> normalize_text("It's 42, isn't it?")
    "it's forty two isn't it"
    >>> normalize_text("Straße")
    'strasse'
    """
    s = fold_to_ascii_letters(s).translate(_APOSTROPHES)
    if strict:
        bad = [c for c in dict.fromkeys(s) if c.isalpha() and not ("a" <= c <= "z")]
        if bad:
            named = ", ".join(f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})" for c in bad[:5])
            raise TextError(f"character(s) {named} cannot be written in a-z; transliterate the text first")
    for symbol, word in _SYMBOL_WORDS.items():
        s = s.replace(symbol, word)
    s = _DIGIT_GROUPING_RE.sub("", s)
    s = _ORDINAL_RE.sub(lambda m: f" {ordinal_to_words(int(m.group(1)))} ", s)
    s = _DECIMAL_RE.sub(
        lambda m: f" {_digit_string_to_words(m.group(1))} point {' '.join(ONES[int(d)] for d in m.group(2))} ", s)
    s = _DIGITS_RE.sub(lambda m: f" {_digit_string_to_words(m.group(0))} ", s)
    s = _NON_WORD_RE.sub(" ", s)
    words = []
    for token in s.split():
        # Keep apostrophes only between letters: "'tis" -> "tis", "dogs'" -> "dogs", "''" -> "".
        token = re.sub(r"'+", "'", token).strip("'")
        if token:
            words.append(token)
    return " ".join(words)


# ----------------------------------------------------------------------------- fortunes

FORTUNES_DIR = "/usr/share/games/fortunes"
_SKIPPED_FORTUNE_FILES = frozenset({"art", "ascii-art", "translate-me"})
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_ATTRIBUTION_RE = re.compile(r"^\s*(--|-- |~~)")
# Abbreviations are spelled out before sentence splitting, so "Mr. Smith" neither ends a sentence
# nor leaves "mr" in a transcript that a TTS engine reads as "mister".
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "st": "saint", "jr": "junior",
                  "sr": "senior", "prof": "professor", "vs": "versus", "etc": "et cetera", "mt": "mount",
                  "capt": "captain", "gen": "general", "gov": "governor", "sen": "senator", "rev": "reverend",
                  "e.g": "for example", "i.e": "that is"}
_ABBREVIATION_RE = re.compile(r"\b(" + "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True))
                              + r")\.", re.IGNORECASE)
_ACRONYM_RE = re.compile(r"\b[A-Z]*[A-Z][A-Z]+[a-z]*\b")


class FortuneError(ValueError):
    """The fortunes folder is missing or holds no usable sentences."""


def read_fortune_entries(path: str) -> list[str]:
    """Entries of one fortune file (separated by lines holding only '%'), lines joined by spaces.

    Attribution lines ("-- Mark Twain") are dropped.
    """
    with open(path, encoding="utf-8", errors="replace") as f:
        content = f.read()
    entries, lines = [], []
    for line in content.splitlines() + ["%"]:
        if line.strip() == "%":
            if lines:
                entries.append(" ".join(lines))
            lines = []
        elif line.strip() and not _ATTRIBUTION_RE.match(line):
            lines.append(line.strip())
    return entries


def split_sentences(text: str) -> list[str]:
    """Splits running text after '.', '!' or '?' followed by white space."""
    return [p.strip() for p in _SENTENCE_END_RE.split(text) if p.strip()]


def expand_abbreviations(text: str) -> str:
    """"Dr. Who met Mr. X, e.g. here." -> "doctor Who met mister X, for example here."."""
    return _ABBREVIATION_RE.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], text)


def _looks_like_prose(sentence: str) -> bool:
    """Mostly letters, and no acronyms ("IBM", "UNIX") unless the whole sentence is upper case:
    TTS engines spell acronyms out, which the lower-cased transcript would not say."""
    letters = sum(c.isalpha() or c.isspace() for c in sentence)
    if letters < 0.85 * len(sentence):
        return False
    return sentence.upper() == sentence or not _ACRONYM_RE.search(sentence)


def fortune_sentences(fortunes_dir: str = FORTUNES_DIR, min_words: int = 3, max_words: int = 20) -> list[str]:
    """Normalised, de-duplicated sentences of `min_words..max_words` words from every fortune file.

    Reads the UTF-8 `.u8` twin of each file when present; skips ASCII-art and non-English files
    and sentences that are mostly symbols. Order is deterministic (sorted file names, file order).
    """
    if not os.path.isdir(fortunes_dir):
        raise FortuneError(f"{fortunes_dir}: fortunes folder does not exist; install the Debian package 'fortunes'")
    names = sorted(n for n in os.listdir(fortunes_dir)
                   if "." not in n and n not in _SKIPPED_FORTUNE_FILES
                   and os.path.isfile(os.path.join(fortunes_dir, n)))
    seen, sentences = set(), []
    for name in names:
        path = os.path.join(fortunes_dir, name)
        if os.path.isfile(path + ".u8"):
            path += ".u8"
        for entry in read_fortune_entries(path):
            for raw in split_sentences(expand_abbreviations(entry)):
                if not _looks_like_prose(raw):
                    continue
                sentence = normalize_text(raw)
                num_words = len(sentence.split())
                if min_words <= num_words <= max_words and sentence not in seen:
                    seen.add(sentence)
                    sentences.append(sentence)
    if not sentences:
        raise FortuneError(f"{fortunes_dir}: no sentences of {min_words}..{max_words} words found")
    return sentences
