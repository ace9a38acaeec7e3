"""make_dataset on real espeak-ng speech files and a real SentencePiece model."""
import gc
import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.data import features as F
from tf_todm.data.manifest import Utterance, read_manifest, write_manifest
from tf_todm.data.pipeline import (DataError, batch_seconds, default_bucket_boundaries_s, make_dataset,
                                   utterance_seconds)
from tf_todm.data.specaugment import SpecAugment
from tf_todm.data.text import fortune_sentences, normalize_text
from tf_todm.data.tokenizer import Tokenizer, train_tokenizer

NUM_UTTERANCES = 13


def speak(text, path, voice="en-us", rate=16000, channels=1):
    cmd = (f"espeak-ng -v {voice} --stdout {json.dumps(text)} | "
           f"sox -t wav - -r {rate} -c {channels} -b 16 {path}")
    subprocess.run(cmd, shell=True, check=True, capture_output=True)
    info = sf.info(str(path))
    return info.frames / info.samplerate


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    texts = [t for t in (normalize_text(s) for s in fortune_sentences()[:400]) if t]
    tokenizer = Tokenizer(train_tokenizer(texts, str(root / "tok"), 67))
    spoken = sorted(texts[:NUM_UTTERANCES], key=len)[::-1]  # varied lengths
    utterances = []
    for i, text in enumerate(spoken):
        path = root / f"u{i}.wav"
        duration = speak(" ".join(text.split()[:12]), path, voice=["en-us", "en-gb", "en-sc"][i % 3])
        utterances.append(Utterance(str(path), duration, " ".join(text.split()[:12])))
    return root, tokenizer, utterances


def collect(ds):
    return [{k: v.numpy() for k, v in b.items()} for b in ds]


def by_text(batches):
    out = {}
    for b in batches:
        for i, text in enumerate(b["text"]):
            out[text.decode()] = {k: b[k][i] for k in ("features", "feature_lengths", "labels", "label_lengths")}
    return out


def test_batches_hold_exact_features_and_labels(corpus):
    _, tokenizer, utts = corpus
    batches = collect(make_dataset(utts, tokenizer, batch_size=4, training=False))
    layer = F.LogMelSpectrogram()
    seen = by_text(batches)
    assert sorted(seen) == sorted(u.text for u in utts)  # each utterance exactly once
    for b in batches:
        bsz = len(b["text"])
        assert 1 <= bsz <= 4
        assert b["features"].dtype == np.float32 and b["features"].shape[2] == 80
        assert b["feature_lengths"].dtype == np.int32 and b["labels"].dtype == np.int32
        assert b["features"].shape[1] == b["feature_lengths"].max()
        assert b["labels"].shape[1] == b["label_lengths"].max()
    for u in utts:
        item = seen[u.text]
        audio, _ = sf.read(u.audio_filepath, dtype="float32")
        ref = layer(audio[None]).numpy()[0]
        t = item["feature_lengths"]
        assert t == F.frames_for_samples(len(audio)) == len(ref)
        np.testing.assert_allclose(item["features"][:t], ref, atol=1e-4)
        assert np.all(item["features"][t:] == 0.0)
        ids = tokenizer.encode(u.text)[0]
        assert item["label_lengths"] == len(ids)
        assert list(item["labels"][: len(ids)]) == ids
        assert np.all(item["labels"][len(ids):] == BLANK_ID)


def test_deterministic_given_seed_and_reshuffled_per_epoch(corpus):
    _, tokenizer, utts = corpus
    spec = SpecAugment()
    ds1 = make_dataset(utts, tokenizer, batch_size=3, training=True, seed=5, specaugment=spec,
                       bucket_boundaries_s=[2.5])
    ds2 = make_dataset(utts, tokenizer, batch_size=3, training=True, seed=5, specaugment=spec,
                       bucket_boundaries_s=[2.5])
    a_epochs = [collect(ds1), collect(ds1)]
    b_epochs = [collect(ds2), collect(ds2)]
    for a, b in zip(a_epochs, b_epochs):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            for k in x:
                np.testing.assert_array_equal(x[k], y[k])
    order = lambda batches: [t for b in batches for t in b["text"]]
    assert order(a_epochs[0]) != order(a_epochs[1])
    assert sorted(order(a_epochs[0])) == sorted(order(a_epochs[1]))
    other = collect(make_dataset(utts, tokenizer, batch_size=3, training=True, seed=6, bucket_boundaries_s=[2.5]))
    assert order(other) != order(a_epochs[0])


def test_specaugment_only_in_training_and_only_masks(corpus):
    _, tokenizer, utts = corpus
    spec = SpecAugment(mask_value=0.0)
    clean = by_text(collect(make_dataset(utts, tokenizer, batch_size=2, training=False, specaugment=spec)))
    aug = by_text(collect(make_dataset(utts, tokenizer, batch_size=2, training=True, seed=1, specaugment=spec)))
    num_changed = 0
    for text, item in aug.items():
        ref = clean[text]["features"]
        t = item["feature_lengths"]
        x = item["features"][:t]
        changed = x != ref[:t]
        assert np.all(x[changed] == 0.0)
        num_changed += changed.sum()
    assert num_changed > 0


def test_shards_by_input_context_before_decoding(corpus):
    _, tokenizer, utts = corpus
    texts = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid, num_replicas_in_sync=2)
        ds = make_dataset(utts, tokenizer, batch_size=4, training=True, input_context=ctx, seed=3)
        assert ds.data_report.kept == utts[pid::2]
        batches = collect(ds)
        assert max(len(b["text"]) for b in batches) <= 2  # global batch 4 over 2 replicas
        texts.append({t.decode() for b in batches for t in b["text"]})
    assert not texts[0] & texts[1]
    assert texts[0] | texts[1] == {u.text for u in utts}


def test_max_batch_seconds_bounds_padded_audio(corpus):
    _, tokenizer, utts = corpus
    batches = collect(make_dataset(utts, tokenizer, max_batch_seconds=7.0, training=True, seed=0,
                                   bucket_boundaries_s=[2.0, 3.0]))
    assert sum(len(b["text"]) for b in batches) == len(utts)
    for b in batches:
        padded = len(b["text"]) * b["features"].shape[1] * 0.01
        assert padded <= 7.0 or len(b["text"]) == 1
    assert abs(sum(batch_seconds(b["feature_lengths"]) for b in batches) - utterance_seconds(utts)) < 0.01 * len(utts)


def test_cached_features_and_flac_decoder_give_same_batches(corpus, tmp_path):
    _, tokenizer, utts = corpus
    ref = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=False)))
    cached = make_dataset(utts, tokenizer, batch_size=4, training=True, seed=2, cache_features=True)
    for text, item in by_text(collect(cached)).items():
        np.testing.assert_array_equal(item["features"], ref[text]["features"][: len(item["features"])])
    flacs = []
    for u in utts[:4]:
        audio, rate = sf.read(u.audio_filepath, dtype="int16")
        path = tmp_path / (u.audio_filepath.split("/")[-1][:-4] + ".flac")
        sf.write(str(path), audio, rate)
        flacs.append(Utterance(str(path), u.duration, u.text))
    ds = make_dataset(flacs, tokenizer, batch_size=4, training=False)
    assert ds.data_report.decoder == "soundfile"
    for text, item in by_text(collect(ds)).items():
        t = item["feature_lengths"]
        np.testing.assert_allclose(item["features"][:t], ref[text]["features"][:t], atol=1e-5)
    assert make_dataset(utts[:4], tokenizer, batch_size=4, training=False, decoder="soundfile").data_report.decoder \
        == "soundfile"
    with pytest.raises(ValueError, match="16-bit PCM WAV"):
        make_dataset(flacs, tokenizer, batch_size=4, training=False, decoder="wav")


def test_validation_names_the_entry_or_skips(corpus, tmp_path):
    root, tokenizer, utts = corpus
    speak("eight kilohertz", tmp_path / "r8k.wav", rate=8000)
    speak("two channels", tmp_path / "stereo.wav", channels=2)
    bad = [
        (Utterance(str(tmp_path / "missing.wav"), 1.0, "hello"), "audio file does not exist"),
        (Utterance(utts[0].audio_filepath, 1.0, "  "), "empty text"),
        (Utterance(utts[1].audio_filepath, 1.0, "price in € now"), r"character\(s\) \['€'\]"),
        (Utterance(str(tmp_path / "r8k.wav"), 1.0, "eight kilohertz"), "sample rate is 8000 Hz; expected 16000 Hz"),
        (Utterance(str(tmp_path / "stereo.wav"), 1.0, "two channels"), "audio has 2 channels; expected mono"),
    ]
    for entry, pattern in bad:
        mixed = utts[:3] + [entry] + utts[3:5]
        with pytest.raises(DataError, match=rf"^utterance #3 \({entry.audio_filepath}\): {pattern}"):
            make_dataset(mixed, tokenizer, batch_size=2, training=False)
    mixed = utts[:4] + [b for b, _ in bad]
    ds = make_dataset(mixed, tokenizer, batch_size=2, training=False, drop_bad="skip")
    assert ds.data_report.num_dropped == len(bad)
    assert sum(len(b["text"]) for b in collect(ds)) == 4
    with pytest.raises(DataError, match="no usable utterances"):
        make_dataset([b for b, _ in bad], tokenizer, batch_size=2, training=False, drop_bad="skip")
    with pytest.raises(ValueError, match="exactly one of"):
        make_dataset(utts, tokenizer, training=False)


def test_default_bucket_boundaries():
    assert default_bucket_boundaries_s([1.0, 2.0, 3.0, 4.0, 5.0], num_buckets=2) == [3.0]
    assert default_bucket_boundaries_s([2.0] * 10) == []
    b = default_bucket_boundaries_s(np.linspace(1, 9, 100))
    assert len(b) == 7 and b == sorted(b)


def test_errors_name_the_manifest_file_and_line(corpus, tmp_path):
    _, tokenizer, utts = corpus
    manifest = str(tmp_path / "train.jsonl")
    write_manifest(manifest, utts[:2] + [Utterance(utts[2].audio_filepath, 1.0, "price in € now")] + utts[3:4])
    with open(manifest) as f:
        lines = f.read().splitlines()
    with open(manifest, "w") as f:  # a blank line: the bad entry is line 4, utterance #2
        f.write("\n".join(lines[:1] + [""] + lines[1:]) + "\n")
    read = read_manifest(manifest)
    with pytest.raises(DataError, match=rf"^{manifest}:4 \({utts[2].audio_filepath}\): character\(s\) \['€'\]"):
        make_dataset(read, tokenizer, batch_size=2, training=False)
    ds = make_dataset(read, tokenizer, batch_size=2, training=False, drop_bad="skip")
    assert [where for where, _ in ds.data_report.dropped] == [f"{manifest}:4 ({utts[2].audio_filepath})"]


def _labels_by_text(ds):
    return {text: tuple(labels[:n]) for b in collect(ds)
            for text, labels, n in zip(b["text"].tolist(), b["labels"], b["label_lengths"])}


def test_one_tokenizer_serves_datasets_across_seed_resets_and_gc(corpus):
    """Regression: tensorflow-text's SentencePiece resource used to be made once, eagerly, and
    shared; `tf.random.set_seed` (called by every Trainer via keras.utils.set_random_seed) clears
    TF's eager kernel cache, which deleted it, and every later dataset of that Tokenizer failed
    with "Resource localhost/_0_SentencepieceOp/... does not exist"."""
    _, tokenizer, utts = corpus
    expected = {u.text.encode(): tuple(tokenizer.encode(u.text)[0]) for u in utts[:5]}
    first = make_dataset(utts[:5], tokenizer, batch_size=2, training=True, seed=1)
    assert _labels_by_text(first) == expected
    built_before_reset = make_dataset(utts[:5], tokenizer, batch_size=3, training=False)
    del first
    gc.collect()
    tf.random.set_seed(11)  # what a second training run in the same process does
    second = make_dataset(utts[:5], tokenizer, batch_size=2, training=True, seed=2)
    assert _labels_by_text(second) == expected
    assert _labels_by_text(built_before_reset) == expected
    del second
    gc.collect()
    tf.random.set_seed(12)
    assert _labels_by_text(make_dataset(utts[:5], tokenizer, batch_size=2, training=False)) == expected


def test_pipeline_perturbs_training_audio_only(corpus):
    _, tokenizer, utts = corpus
    clean = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=False, speed_perturb=0.2)))
    plain = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=True, seed=3)))
    a = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=True, seed=3, speed_perturb=0.2)))
    b = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=True, seed=3, speed_perturb=0.2)))
    c = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=True, seed=4, speed_perturb=0.2)))

    def valid(item, key):
        n = item["feature_lengths"] if key == "features" else item["label_lengths"]
        return item[key][:n]

    ratios = []
    for text, item in a.items():
        np.testing.assert_array_equal(valid(plain[text], "features"), valid(clean[text], "features"))  # off
        np.testing.assert_array_equal(valid(item, "features"), valid(b[text], "features"))  # same seed
        np.testing.assert_array_equal(valid(item, "labels"), valid(clean[text], "labels"))  # text untouched
        ratios.append(item["feature_lengths"] / clean[text]["feature_lengths"])
    ratios = np.array(ratios)
    assert np.all((ratios > 1 / 1.2 - 0.02) & (ratios < 1 / 0.8 + 0.02)), ratios
    assert np.std(ratios) > 0.02, ratios  # the factor differs per utterance
    assert any(c[t]["feature_lengths"] != a[t]["feature_lengths"] for t in a)  # and per seed (epoch)
    with pytest.raises(ValueError, match="speed_perturb needs the audio of every epoch"):
        make_dataset(utts, tokenizer, batch_size=4, training=True, speed_perturb=0.1, cache_features=True)


def test_pipeline_warps_training_features_only(corpus):
    _, tokenizer, utts = corpus
    clean = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=False, vtlp=0.1)))
    plain = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=True, seed=3)))
    a = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=True, seed=3, vtlp=0.1)))
    cached = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=True, seed=3, vtlp=0.1,
                                          cache_features=True)))
    other_seed = by_text(collect(make_dataset(utts, tokenizer, batch_size=4, training=True, seed=4, vtlp=0.1)))

    def valid(item):
        return item["features"][:item["feature_lengths"]]
    for text, item in a.items():
        np.testing.assert_array_equal(valid(plain[text]), valid(clean[text]))  # off by default
        assert item["feature_lengths"] == clean[text]["feature_lengths"]  # VTLP keeps every frame
        np.testing.assert_allclose(valid(item), valid(cached[text]), atol=1e-5)  # same warp when cached
        assert not np.allclose(valid(item), valid(clean[text]), atol=1e-3)  # every utterance warped
    assert any(not np.allclose(valid(other_seed[t]), valid(a[t]), atol=1e-3) for t in a)  # per seed (epoch)
    with pytest.raises(ValueError, match=r"make_dataset: vtlp must be in \[0, 0.5\), got 0.6"):
        make_dataset(utts, tokenizer, batch_size=4, training=True, vtlp=0.6)
