"""Tests for tf_todm.data.corpora on fixtures in the exact LibriSpeech / TED-LIUM / JSONL formats."""

import os

import numpy as np
import pytest
import soundfile

from tf_todm.data.audio import load_audio
from tf_todm.data.corpora import (CorpusError, load_librispeech, load_tedlium, normalize_tedlium_text,
                                  parse_stm_line)
from tf_todm.data.manifest import read_manifest, write_manifest

SR = 16000


def _signal(seed, n):
    return (np.random.default_rng(seed).uniform(-0.5, 0.5, n) * 32767).astype(np.int16)


def _make_librispeech(root):
    """root/SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac + SPEAKER-CHAPTER.trans.txt; returns {id: (samples, text)}."""
    expected = {}
    for speaker, chapter, texts in (("84", "121123", ["GO DO YOU HEAR", "BUT IN LESS THAN FIVE MINUTES"]),
                                    ("174", "50561", ["THE DOG'S BARK WAS LOUD"])):
        d = os.path.join(root, speaker, chapter)
        os.makedirs(d)
        lines = []
        for i, text in enumerate(texts):
            utt = f"{speaker}-{chapter}-{i:04d}"
            x = _signal(len(expected), 1601 + 997 * len(expected))
            soundfile.write(os.path.join(d, utt + ".flac"), x, SR, subtype="PCM_16")
            lines.append(f"{utt} {text}\n")
            expected[utt] = (x, text)
        with open(os.path.join(d, f"{speaker}-{chapter}.trans.txt"), "w") as f:
            f.writelines(lines)
    return expected


def test_librispeech(tmp_path):
    root = str(tmp_path / "LibriSpeech" / "dev-clean")
    expected = _make_librispeech(root)
    utts = load_librispeech(root)
    assert [os.path.basename(u.audio_filepath)[:-5] for u in utts] == sorted(expected)
    by_id = {os.path.basename(u.audio_filepath)[:-5]: u for u in utts}
    assert by_id["84-121123-0000"].text == "go do you hear"
    assert by_id["174-50561-0000"].text == "the dog's bark was loud"
    for utt_id, u in by_id.items():
        x, _ = expected[utt_id]
        assert u.speaker == utt_id.split("-")[0]
        assert u.duration == pytest.approx(len(x) / SR)
        assert os.path.isabs(u.audio_filepath)
        np.testing.assert_array_equal(np.round(load_audio(u.audio_filepath) * 32768).astype(np.int16), x)
    # JSONL round trip through the manifest module.
    manifest = str(tmp_path / "dev-clean.jsonl")
    write_manifest(manifest, utts)
    assert read_manifest(manifest) == [type(u)(u.audio_filepath, round(u.duration, 4), u.text, u.speaker, "")
                                       for u in utts]


def test_librispeech_errors_name_file_and_line(tmp_path):
    root = str(tmp_path / "ls")
    _make_librispeech(root)
    trans = os.path.join(root, "84", "121123", "84-121123.trans.txt")
    with open(trans, "a") as f:
        f.write("84-121123-0009 MISSING AUDIO\n")
    with pytest.raises(CorpusError, match=r"84-121123.trans.txt:3: audio file .*84-121123-0009.flac does not exist"):
        load_librispeech(root)
    with open(trans, "w") as f:
        f.write("84-121123-0000 GO\nbogus-id TEXT\n")
    with pytest.raises(CorpusError, match=r"84-121123.trans.txt:2: utterance id 'bogus-id'"):
        load_librispeech(root)
    with open(trans, "w") as f:
        f.write("84-121123-0000\n")
    with pytest.raises(CorpusError, match=r"84-121123.trans.txt:1: utterance 84-121123-0000 has no transcript"):
        load_librispeech(root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no SPEAKER/CHAPTER"):
        load_librispeech(str(tmp_path / "empty"))
    with pytest.raises(CorpusError, match="does not exist"):
        load_librispeech(str(tmp_path / "nope"))


def test_librispeech_wrong_rate(tmp_path):
    root = str(tmp_path / "ls")
    _make_librispeech(root)
    soundfile.write(os.path.join(root, "174", "50561", "174-50561-0000.flac"), _signal(0, 800), 8000)
    with pytest.raises(CorpusError, match=r"174-50561.trans.txt:1: .* has 8000 Hz; expected 16000 Hz"):
        load_librispeech(root)


def _write_sphere(path, samples):
    header = (f"NIST_1A\n   1024\ndatabase_id -s7 TEDLIUM\nsample_count -i {len(samples)}\nsample_rate -i {SR}\n"
              "channel_count -i 1\nsample_n_bytes -i 2\nsample_byte_format -s2 01\nsample_coding -s3 pcm\n"
              "end_head\n").encode()
    with open(path, "wb") as f:
        f.write(header.ljust(1024, b" ") + samples.astype("<i2").tobytes())


STM = """;; CATEGORY "0" "" ""
TalkA_2010 1 TalkA_2010 0.00 1.20 <o,f0,male> ignore_time_segment_in_scoring
TalkA_2010 1 TalkA_2010 1.20 2.45 <o,f0,male> so it 's a {NOISE} story about <unk> nineteen
TalkA_2010 1 TalkA_2010 2.45 3.00 <o,f0,male> and i 'm done
"""


def _make_tedlium(root):
    os.makedirs(os.path.join(root, "sph"))
    os.makedirs(os.path.join(root, "stm"))
    talk = _signal(9, int(3.3 * SR))
    _write_sphere(os.path.join(root, "sph", "TalkA_2010.sph"), talk)
    with open(os.path.join(root, "stm", "TalkA_2010.stm"), "w") as f:
        f.write(STM)
    return talk


def test_tedlium_segments(tmp_path):
    root, cache = str(tmp_path / "tedlium" / "dev"), str(tmp_path / "cache")
    talk = _make_tedlium(root)
    utts = load_tedlium(root, cache)
    assert [u.text for u in utts] == ["so it's a story about nineteen", "and i'm done"]
    assert [u.speaker for u in utts] == ["TalkA_2010", "TalkA_2010"]
    for u, (start, end) in zip(utts, [(1.20, 2.45), (2.45, 3.00)]):
        assert u.duration == pytest.approx(end - start)
        assert os.path.dirname(u.audio_filepath) == os.path.abspath(cache)
        cut = np.round(load_audio(u.audio_filepath) * 32768).astype(np.int16)
        np.testing.assert_array_equal(cut, talk[int(round(start * SR)):int(round(end * SR))])
    # Cached: a second call reuses the segment files (same mtime) even if the talk is gone.
    mtimes = [os.path.getmtime(u.audio_filepath) for u in utts]
    os.remove(os.path.join(root, "sph", "TalkA_2010.sph"))
    assert load_tedlium(root, cache) == utts
    assert [os.path.getmtime(u.audio_filepath) for u in utts] == mtimes
    manifest = str(tmp_path / "ted.jsonl")
    write_manifest(manifest, utts)
    assert [u.text for u in read_manifest(manifest)] == [u.text for u in utts]


def test_tedlium_errors(tmp_path):
    root = str(tmp_path / "ted")
    _make_tedlium(root)
    with open(os.path.join(root, "stm", "TalkA_2010.stm"), "a") as f:
        f.write("TalkA_2010 1 TalkA_2010 3.00 9.00 <o,f0,male> past the end\n")
    with pytest.raises(CorpusError, match=r"TalkA_2010.stm:5: segment ends at 9.00 s but .* lasts 3.30 s"):
        load_tedlium(root, str(tmp_path / "c1"))
    with open(os.path.join(root, "stm", "TalkA_2010.stm"), "w") as f:
        f.write("TalkA_2010 1 TalkA_2010 abc 2.0 <o> text\n")
    with pytest.raises(CorpusError, match=r"TalkA_2010.stm:1: START/END must be seconds"):
        load_tedlium(root, str(tmp_path / "c2"))
    os.remove(os.path.join(root, "sph", "TalkA_2010.sph"))
    with open(os.path.join(root, "stm", "TalkA_2010.stm"), "w") as f:
        f.write(STM)
    with pytest.raises(CorpusError, match=r"TalkA_2010.stm:3: talk audio .*TalkA_2010.sph does not exist"):
        load_tedlium(root, str(tmp_path / "c3"))
    with pytest.raises(CorpusError, match="expected TED-LIUM layout"):
        load_tedlium(str(tmp_path), None)


def test_stm_parsing():
    assert parse_stm_line(";; comment", "f:1") is None
    assert parse_stm_line("T 1 S 1.5 2.5 <o,f0,female> hello world", "f:2") == (
        "T", "1", "S", 1.5, 2.5, "<o,f0,female>", "hello world")
    assert parse_stm_line("T 1 S 1.5 2.5 no label here", "f:3")[5:] == ("", "no label here")
    with pytest.raises(CorpusError, match="f:4: segment times"):
        parse_stm_line("T 1 S 2.5 1.5 <o> x", "f:4")
    with pytest.raises(CorpusError, match="f:5: expected 'FILE CHANNEL"):
        parse_stm_line("T 1 S", "f:5")
    assert normalize_tedlium_text("we 're here [laughter] (2) {COUGH} <unk> ok") == "we're here ok"
