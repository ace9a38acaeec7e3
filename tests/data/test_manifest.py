"""JSONL manifest parsing: good lines, every kind of bad line, and atomic writes."""
import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from tf_todm.data.manifest import ManifestError, Utterance, parse_manifest_line, read_manifest, write_manifest


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_reads_relative_paths_and_optional_fields(tmp_path):
    path = _write(tmp_path / "m.jsonl", [
        json.dumps({"audio_filepath": "a/1.wav", "duration": 1.5, "text": "hello", "voice": "v1", "domain": "open"}),
        "",
        json.dumps({"audio_filepath": "/abs/2.flac", "duration": 2, "text": "x", "speaker": "s9"}),
    ])
    first, second = read_manifest(path)
    assert first == Utterance(str(tmp_path / "a/1.wav"), 1.5, "hello", "v1", "open")
    assert second.audio_filepath == "/abs/2.flac" and second.speaker == "s9" and second.domain == ""


@pytest.mark.parametrize("line, message", [
    ("{not json", "m.jsonl:2: not valid JSON"),
    ("[1, 2]", "m.jsonl:2: expected a JSON object"),
    ('{"audio_filepath": "a.wav", "text": "x"}', r"m.jsonl:2: missing field\(s\) \['duration'\]"),
    ('{"audio_filepath": "a.wav", "duration": -1, "text": "x"}', "m.jsonl:2: field 'duration' must be a positive"),
    ('{"audio_filepath": "a.wav", "duration": "NaN", "text": "x"}', "m.jsonl:2: field 'duration'"),
    ('{"audio_filepath": "", "duration": 1, "text": "x"}', "m.jsonl:2: field 'audio_filepath'"),
    ('{"audio_filepath": "a.wav", "duration": 1, "text": 5}', "m.jsonl:2: field 'text' must be a string"),
])
def test_bad_lines_name_file_line_and_expectation(tmp_path, line, message):
    good = json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "ok"})
    path = _write(tmp_path / "m.jsonl", [good, line])
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_missing_and_empty_manifests(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(str(tmp_path / "nope.jsonl"))
    with pytest.raises(ManifestError, match="no utterances"):
        read_manifest(_write(tmp_path / "empty.jsonl", ["", "  "]))


def test_write_then_read_round_trip(tmp_path):
    utts = [Utterance(str(tmp_path / "audio" / f"{i}.wav"), 0.5 + i, f"text {i}", f"v{i}", "command") for i in range(3)]
    path = str(tmp_path / "out.jsonl")
    write_manifest(path, utts)
    assert read_manifest(path) == utts
    assert json.loads(open(path).readline())["audio_filepath"] == os.path.join("audio", "0.wav")
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_lines_parse_or_raise_manifest_error(text):
    try:
        parse_manifest_line(text, "f:1", "/base")
    except ManifestError as e:
        assert str(e).startswith("f:1: ")


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["audio_filepath", "duration", "text", "speaker", "domain", "x"]),
                       st.one_of(st.text(max_size=10), st.floats(allow_nan=True), st.integers(), st.none())))
def test_fuzz_records_500(record):
    try:
        u = parse_manifest_line(json.dumps(record), "f:1", "/base")
    except ManifestError as e:
        assert str(e).startswith("f:1: ")
    else:
        assert u.duration > 0 and isinstance(u.text, str) and os.path.isabs(u.audio_filepath)


def test_read_manifest_records_the_source_line(tmp_path):
    path = _write(tmp_path / "m.jsonl", [
        json.dumps({"audio_filepath": "a.wav", "duration": 1.0, "text": "one"}),
        "",
        json.dumps({"audio_filepath": "b.wav", "duration": 1.0, "text": "two"}),
    ])
    first, second = read_manifest(path)
    assert (first.source, second.source) == (f"{path}:1", f"{path}:3")  # blank lines still count
    # Where an utterance came from is not part of what it is, nor of what is written back.
    assert second == Utterance(str(tmp_path / "b.wav"), 1.0, "two")
    assert "source" not in second.to_manifest_dict(str(tmp_path))
    assert Utterance("/x.wav", 1.0, "t").source == ""


def test_spread_subset_takes_every_kth_in_order():
    from tf_todm.data.manifest import spread_subset
    items = list(range(10))
    assert spread_subset(items, 5) == [0, 2, 4, 6, 8]
    assert spread_subset(items, 3) == [0, 3, 6]
    assert spread_subset(items, 0) == items and spread_subset(items, 20) == items


def test_spread_subset_by_group_keeps_the_mix_of_an_alternating_list():
    from tf_todm.data.manifest import spread_subset
    items = [("command" if i % 2 == 0 else "open", i) for i in range(799)]
    strided = sum(d == "command" for d, _ in spread_subset(items, 200))
    assert min(strided, 200 - strided) < 10  # a plain stride of ~4 aliases with the alternation
    subset = spread_subset(items, 200, key=lambda item: item[0])
    assert len(subset) == 200 and subset == sorted(subset, key=lambda item: item[1])
    assert sum(d == "command" for d, _ in subset) == 100
    groups = [("a", i) for i in range(10)] + [("b", i) for i in range(5)] + [("c", i) for i in range(5)]
    subset = spread_subset(groups, 5, key=lambda item: item[0])  # shares 2.5, 1.25, 1.25
    assert len(subset) == 5 and len(set(subset)) == 5
    assert sum(g == "a" for g, _ in subset) in (2, 3)
