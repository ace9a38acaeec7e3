"""Tests for tf_todm.data.synthetic: real espeak-ng / flite runs, real files."""

import dataclasses
import hashlib
import json
import os
import subprocess

import numpy as np
import pytest
import soundfile

from tf_todm.data import synthetic
from tf_todm.data.manifest import read_manifest
from tf_todm.data.synthetic import (DOMAINS, SPLITS, VOICES, CorpusConfig, SynthesisError, add_noise,
                                    colored_noise, ensure_default_corpus, generate_corpus, resample_to_16k, reverb_impulse_response,
                                    split_voices, synthesize)

HOURS = 0.01


def _read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _hashes(root):
    out = {}
    for dirpath, _, files in os.walk(os.path.join(root, "audio")):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[os.path.relpath(os.path.join(dirpath, name), root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    a = str(tmp_path_factory.mktemp("corpus_a"))
    b = str(tmp_path_factory.mktemp("corpus_b"))
    summary_a = generate_corpus(a, HOURS, seed=3, num_workers=2, progress=False)
    summary_b = generate_corpus(b, HOURS, seed=3, num_workers=1, progress=False)
    return a, b, summary_a, summary_b


def test_files_are_16k_mono_and_durations_match(corpora):
    root = corpora[0]
    for split in SPLITS:
        records = _read_jsonl(os.path.join(root, f"{split}.jsonl"))
        assert records
        for r in records:
            assert set(r) == {"audio_filepath", "duration", "text", "voice", "domain"}
            assert not os.path.isabs(r["audio_filepath"])
            info = soundfile.info(os.path.join(root, r["audio_filepath"]))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert r["duration"] == pytest.approx(info.frames / 16000, abs=1e-4)
            assert 0.5 < r["duration"] < 20
            x, _ = soundfile.read(os.path.join(root, r["audio_filepath"]))
            assert np.max(np.abs(x)) > 0.01 and np.max(np.abs(x)) <= 1.0


def test_splits_disjoint_in_voices_and_sentences(corpora):
    root = corpora[0]
    records = {s: _read_jsonl(os.path.join(root, f"{s}.jsonl")) for s in SPLITS}
    for i, s in enumerate(SPLITS):
        for t in SPLITS[i + 1:]:
            assert not {r["voice"] for r in records[s]} & {r["voice"] for r in records[t]}
            assert not {r["text"] for r in records[s]} & {r["text"] for r in records[t]}


def test_engines_domains_and_minimum_eval_size(corpora):
    root, summary = corpora[0], corpora[2]
    for split in SPLITS:
        records = _read_jsonl(os.path.join(root, f"{split}.jsonl"))
        assert {r["voice"].split(":")[0] for r in records} == {"espeak", "flite"}
        counts = [sum(r["domain"] == d for r in records) for d in DOMAINS]
        assert min(counts) > 0 and abs(counts[0] - counts[1]) <= 1
        if split != "train":
            assert len(records) >= CorpusConfig().min_eval_utterances
        assert summary["splits"][split]["utterances"] == len(records)
        assert summary["splits"][split]["voices"] == sorted({r["voice"] for r in records})
        assert summary["splits"][split]["hours"] == pytest.approx(sum(r["duration"] for r in records) / 3600, abs=1e-4)
    train_hours = summary["splits"]["train"]["hours"]
    assert 0.5 * HOURS * 0.8 < train_hours < 2.0 * HOURS * 0.8
    with open(os.path.join(root, "summary.json")) as f:
        on_disk = json.load(f)
    assert on_disk == {k: v for k, v in summary.items() if k != "generation"}
    assert summary["generation"]["audio_seconds_per_wall_second"] > 0


def test_same_seed_same_bytes_whatever_the_worker_count(corpora):
    a, b = corpora[0], corpora[1]
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "summary.json"):
        with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
            assert fa.read() == fb.read(), name
    ha, hb = _hashes(a), _hashes(b)
    assert ha == hb and len(ha) == corpora[2]["utterances"]
    assert not os.path.exists(os.path.join(a, ".tmp"))


def test_manifest_reader_maps_voice_to_speaker(corpora):
    utts = read_manifest(os.path.join(corpora[0], "dev.jsonl"))
    records = _read_jsonl(os.path.join(corpora[0], "dev.jsonl"))
    assert [u.speaker for u in utts] == [r["voice"] for r in records]
    assert [u.domain for u in utts] == [r["domain"] for r in records]
    assert all(os.path.isfile(u.audio_filepath) for u in utts)


def test_different_seed_changes_plan():
    jobs_a, voices_a, _ = synthetic.plan_corpus(0.01, 1)
    jobs_b, voices_b, _ = synthetic.plan_corpus(0.01, 2)
    assert [j.text for j in jobs_a] != [j.text for j in jobs_b]
    assert voices_a["test"] != voices_b["test"]


def test_voice_list_and_split():
    names = [v.name for v in VOICES]
    assert len(set(names)) == len(names) >= 30
    assert len({(v.engine, v.base, v.variant) for v in VOICES}) >= 30
    assert {v.engine for v in VOICES} == {"espeak", "flite"}
    split = split_voices(0)
    assert sum(len(v) for v in split.values()) == len(VOICES)
    for s in SPLITS:
        assert {v.engine for v in split[s]} == {"espeak", "flite"}
    assert not set(split["train"]) & set(split["test"])
    assert 0.6 < len(split["train"]) / len(VOICES) < 0.8


def test_voice_names_parse_back():
    assert all(synthetic.parse_voice(v.name) == v for v in VOICES)
    assert synthetic.parse_voice("flite:awb:r92:f125") == synthetic.Voice("flite", "awb", "", 92, 125)
    with pytest.raises(SynthesisError, match="voice name 'flite:awb:92'"):
        synthetic.parse_voice("flite:awb:92")


def test_extra_train_voices_leave_dev_and_test_unchanged():
    extra = synthetic.resolve_extra_train_voices(["flite8", "flite:awb:r120:f100"])
    assert len(extra) == 9 and extra[-1] == synthetic.Voice("flite", "awb", "", 120, 100)
    plain_jobs, plain_voices, _ = synthetic.plan_corpus(0.3, 0)
    jobs, voices, _ = synthetic.plan_corpus(0.3, 0, CorpusConfig(extra_train_voices=extra))
    for split in ("dev", "test"):
        assert voices[split] == plain_voices[split]
        assert [j for j in jobs if j.split == split] == [j for j in plain_jobs if j.split == split]
    assert voices["train"] == plain_voices["train"] + list(extra)
    train_voices = {j.voice for j in jobs if j.split == "train"}
    assert set(extra) <= train_voices
    test_bases = {v.base for v in voices["test"]}
    assert not {v.base for v in synthetic.EXTRA_TRAIN_VOICE_SETS["flite8"]} & test_bases


def test_extra_train_voices_refuse_test_speakers_and_known_voices():
    test_voice = split_voices(0)["test"][0]
    variant = dataclasses.replace(test_voice, rate=test_voice.rate + 7)
    with pytest.raises(SynthesisError, match=f"shares the base voice '{test_voice.base}' with the test split"):
        synthetic.plan_corpus(0.01, 0, CorpusConfig(extra_train_voices=(variant,)))
    with pytest.raises(SynthesisError, match="is already in VOICES"):
        synthetic.plan_corpus(0.01, 0, CorpusConfig(extra_train_voices=(VOICES[0],)))


def test_bad_arguments():
    with pytest.raises(SynthesisError, match="hours must be a positive number"):
        generate_corpus("/nonexistent", 0.0, 0)
    with pytest.raises(SynthesisError, match="seed must be a non-negative integer"):
        generate_corpus("/nonexistent", 0.1, -1)


# ----------------------------------------------------------------------------- signal pieces

def test_add_noise_hits_requested_snr():
    rng = np.random.default_rng(0)
    speech, noise = rng.standard_normal(4001) * 0.1, rng.standard_normal(4001) * 3.0
    for snr in (0.0, 7.5, 30.0):
        mixed = add_noise(speech, noise, snr)
        residual = mixed - speech
        measured = 10 * np.log10(np.sum(speech.astype(np.float64) ** 2) / np.sum(residual**2))
        assert measured == pytest.approx(snr, abs=1e-6)


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_colored_noise_spectral_slope(exponent):
    x = colored_noise(np.random.default_rng(1), 2**16, exponent)
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-6)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / 16000)
    band = (freqs > 100) & (freqs < 6000)
    slope = np.polyfit(np.log(freqs[band]), np.log(power[band] + 1e-30), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.1)


def test_reverb_impulse_response_decays_60db_at_rt60():
    rt60 = 0.4
    ir = reverb_impulse_response(np.random.default_rng(2), rt60)
    assert ir[0] == 1.0 and len(ir) == int(rt60 * 16000)
    # Schroeder backward integration: energy decay curve in dB; fit slope between -5 and -25 dB.
    tail = ir[1:]
    edc = 10 * np.log10(np.cumsum(tail[::-1] ** 2)[::-1] / np.sum(tail**2))
    t = np.arange(len(edc)) / 16000
    sel = (edc < -5) & (edc > -25)
    slope = np.polyfit(t[sel], edc[sel], 1)[0]  # dB per second
    assert -60 / slope == pytest.approx(rt60, rel=0.15)


def test_resample_keeps_duration_and_frequency():
    sr = 22050
    tone = np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)
    y = resample_to_16k(tone, sr)
    assert len(y) == 16000
    assert np.argmax(np.abs(np.fft.rfft(y))) == 1000  # 1 Hz bins over 1 s
    assert resample_to_16k(tone, 16000) is tone


def test_synthesize_both_engines_at_16k():
    espeak = next(v for v in VOICES if v.engine == "espeak")
    flite = next(v for v in VOICES if v.base == "kal")  # the 8 kHz voice exercises resampling
    for voice in (espeak, flite):
        y = synthesize(voice, "set a timer for five minutes")
        assert 0.8 < len(y) / 16000 < 5 and np.max(np.abs(y)) > 0.05


# ----------------------------------------------------------------------------- voices really differ

def _log_mel_embedding(x, sr=16000, n_mels=40, n_fft=512):
    """Mean and std of level-normalised log-mel bands over active frames (a crude speaker embedding)."""
    to_mel = lambda f: 2595 * np.log10(1 + f / 700)
    to_hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    edges = to_hz(np.linspace(to_mel(60), to_mel(7600), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1 / sr)
    fb = np.stack([np.clip(np.minimum((bins - lo) / (c - lo), (hi - bins) / (hi - c)), 0, None)
                   for lo, c, hi in zip(edges, edges[1:], edges[2:])])
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::160] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energy = power.sum(1)
    logmel = np.log(power[energy > 0.1 * np.median(energy)] @ fb.T + 1e-10)
    logmel -= logmel.mean(1, keepdims=True)
    return np.concatenate([logmel.mean(0), logmel.std(0)])


def _median_f0(x, sr=16000):
    """Autocorrelation pitch (60..400 Hz), median over voiced 40 ms frames."""
    n, out, threshold = int(0.04 * sr), [], 0.3 * np.sqrt(np.mean(x**2))
    for start in range(0, len(x) - n, int(0.01 * sr)):
        f = x[start:start + n] - x[start:start + n].mean()
        if np.sqrt(np.mean(f**2)) < threshold:
            continue
        ac = np.correlate(f, f, "full")[n - 1:]
        lag = sr // 400 + np.argmax(ac[sr // 400: sr // 60])
        if ac[lag] > 0.4 * ac[0]:
            out.append(sr / lag)
    return float(np.median(out))


@pytest.mark.slow
def test_voices_sound_different():
    """>= 30 voices are told apart by nearest-neighbour matching of a crude spectral embedding across
    two different sentences; every espeak variant changes the audio; pitch spans low and high voices."""
    sentence_a = "the quick brown fox jumps over the lazy dog and then runs away into the forest"
    sentence_b = "remind me on march third at seven thirty a m to call the doctor about my appointment"
    audio_a = [synthesize(v, sentence_a) for v in VOICES]
    audio_b = [synthesize(v, sentence_b) for v in VOICES]
    emb_a = np.stack([_log_mel_embedding(x) for x in audio_a])
    emb_b = np.stack([_log_mel_embedding(x) for x in audio_b])
    distances = np.linalg.norm(emb_a[:, None] - emb_b[None], axis=2)
    identified = int(np.sum(distances.argmin(axis=1) == np.arange(len(VOICES))))
    assert identified >= 30, identified
    for v in VOICES:
        if v.engine == "espeak":  # an unknown variant name silently falls back to the base voice
            outputs = [subprocess.run(["espeak-ng", "-v", name, "-s", str(v.rate), "-p", str(v.pitch), "--stdout",
                                       "hello there"], capture_output=True, check=True).stdout
                       for name in (v.base, f"{v.base}+{v.variant}")]
            assert outputs[0] != outputs[1], v.name
    f0 = np.array([_median_f0(x) for x in audio_a])
    assert np.sum(f0 < 130) >= 8 and np.sum(f0 > 170) >= 8, f0


def test_render_utterance_noise_at_requested_snr_and_silence_padding():
    voice = next(v for v in VOICES if v.engine == "espeak")
    job = synthetic._Job("train", 0, "call maria on speaker", "command", voice, 1234, "x.wav")
    babble = colored_noise(np.random.default_rng(0), 16000, 0.0)
    quiet = dict(level_dbfs_range=(-40.0, -40.0), reverb_prob=0.0)  # no peak limiting, no reverb
    clean, info_clean = synthetic.render_utterance(job, CorpusConfig(noise_prob=0.0, **quiet), babble)
    noisy, info = synthetic.render_utterance(job, CorpusConfig(noise_prob=1.0, snr_db_range=(12.0, 12.0), **quiet),
                                             babble)
    assert info_clean == {"noise": "", "snr_db": None, "rt60_s": 0.0}
    assert info["noise"] in synthetic.NOISE_TYPES and info["snr_db"] == pytest.approx(12.0)
    speech = synthesize(voice, job.text)
    # Speech power is measured over the speech only (not the padding), at the requested -40 dBFS.
    assert len(clean) > len(speech) + 2 * int(0.05 * 16000) - 2
    assert 10 * np.log10(np.sum(clean**2) / len(speech)) == pytest.approx(-40.0, abs=1e-6)
    noise = noisy - clean
    assert 10 * np.log10(np.sum(clean**2) / len(speech) / np.mean(noise**2)) == pytest.approx(12.0, abs=1e-6)
    assert np.abs(clean[:int(0.05 * 16000)]).max() == 0.0


def test_summary_counts_augmentation(corpora):
    summary = corpora[2]
    aug = summary["augmentation"]
    assert aug["clean"] + sum(aug["noise"].values()) == summary["utterances"]
    assert 0 <= aug["reverb"] <= summary["utterances"]
    assert all(0.0 <= q <= 30.0 for q in aug["snr_db_quantiles_10_50_90"])


def test_rerun_smaller_removes_stale_audio_of_ours_only(tmp_path):
    out = str(tmp_path)
    os.makedirs(os.path.join(out, "audio", "train"))
    stale = os.path.join(out, "audio", "train", "train_009999.wav")
    mine = os.path.join(out, "audio", "train", "notes.txt")
    for p in (stale, mine):
        with open(p, "w") as f:
            f.write("x")
    summary = generate_corpus(out, 0.002, seed=4, num_workers=1, progress=False)
    assert not os.path.exists(stale) and os.path.exists(mine)
    assert len(_hashes(out)) == summary["utterances"] + 1


def test_ensure_default_corpus_generates_once_then_leaves_it_alone(tmp_path):
    out = str(tmp_path / "corpus")
    summary = ensure_default_corpus(out, 0.002, seed=4)
    manifests = {s: os.path.join(out, f"{s}.jsonl") for s in SPLITS}
    assert summary["seed"] == 4 and "generation" in summary
    assert summary["utterances"] == sum(len(read_manifest(m)) for m in manifests.values())
    stamps, hashes = {s: os.stat(m).st_mtime_ns for s, m in manifests.items()}, _hashes(out)
    with open(os.path.join(out, "summary.json")) as f:
        stored = json.load(f)
    # An existing corpus is reused whatever hours/seed say; the stored summary comes back.
    assert ensure_default_corpus(out, 5.0, seed=9) == stored
    os.remove(os.path.join(out, "summary.json"))
    assert ensure_default_corpus(out, 5.0, seed=9) is None
    assert {s: os.stat(m).st_mtime_ns for s, m in manifests.items()} == stamps and _hashes(out) == hashes
    # A missing manifest: generated again (same seed, same bytes).
    os.remove(manifests["dev"])
    again = ensure_default_corpus(out, 0.002, seed=4)
    assert again["utterances"] == summary["utterances"] and _hashes(out) == hashes
    assert os.path.exists(manifests["dev"]) and os.path.exists(os.path.join(out, "summary.json"))


def test_ensure_default_corpus_checks_the_extra_training_voices(tmp_path):
    out = str(tmp_path / "corpus")
    summary = ensure_default_corpus(out, 0.002, seed=0, extra_train_voices=["flite8"])
    names = [v.name for v in synthetic.EXTRA_TRAIN_VOICE_SETS["flite8"]]
    assert summary["extra_train_voices"] == names
    hashes = _hashes(out)
    with open(os.path.join(out, "summary.json")) as f:
        stored = json.load(f)
    assert ensure_default_corpus(out, 0.002, seed=0, extra_train_voices=names) == stored  # set or names
    # Asking for other extra voices (or none) is refused, naming the summary and both lists.
    with pytest.raises(synthetic.SynthesisError, match=r"summary.json: extra_train_voices is \[.*flite:awb"
                                                        r".*\], expected none"):
        ensure_default_corpus(out, 0.002, seed=0)
    with pytest.raises(synthetic.SynthesisError, match=r"expected \['flite:kal:r108:f130'\]"):
        ensure_default_corpus(out, 0.002, seed=0, extra_train_voices=["flite:kal:r108:f130"])
    assert _hashes(out) == hashes  # nothing regenerated or touched
    os.remove(os.path.join(out, "summary.json"))
    with pytest.raises(synthetic.SynthesisError, match="summary.json: missing, so the corpus' extra training"):
        ensure_default_corpus(out, 0.002, seed=0, extra_train_voices=["flite8"])
