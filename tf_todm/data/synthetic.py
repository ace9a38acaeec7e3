"""The default corpus: deterministic multi-voice TTS speech with noise and reverberation.

Two engines (espeak-ng and flite) and `VOICES` (46 explicit voices: engine + base voice/accent +
variant + rate + pitch) speak two text domains: "open" (Debian fortunes sentences) and "command"
(`tf_todm.data.commands`), half each by utterance count. Every waveform is resampled to 16 kHz
mono, gets random leading/trailing silence, optional synthetic reverberation (exponentially
decaying noise impulse response) and optional additive noise (white, pink, brown, babble of other
TTS utterances, mains hum) at an SNR drawn in `snr_db_range` (0..30 dB, skewed to cleaner).

Train, dev and test are disjoint in voices AND sentences: the voice list is split ~70/15/15 per
engine, the sentence pools 80/10/10. Everything derives from `seed`: the same seed gives byte-
identical manifests and audio, whatever `num_workers`.

`CorpusConfig.extra_train_voices` adds voices to the train split only (e.g.
`EXTRA_TRAIN_VOICE_SETS["flite8"]`, more flite voices): the voice split, dev and test (manifests and
audio) stay byte-identical, and no extra voice may share a base voice with a test voice.

Layout written under `out_dir`:
  audio/{split}/{split}_{index:06d}.wav   16-bit PCM, 16 kHz, mono
  {train,dev,test}.jsonl                  {"audio_filepath", "duration", "text", "voice", "domain"}
  summary.json                            hours, utterances, voices per split and per domain
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Sequence

import numpy as np
import scipy.fft
import scipy.signal
import soundfile

from tf_todm.constants import SAMPLE_RATE_HZ
from tf_todm.data import audio as audio_lib
from tf_todm.data.commands import command_sentences
from tf_todm.data.text import fortune_sentences

SPLITS = ("train", "dev", "test")
DOMAINS = ("open", "command")
NOISE_TYPES = ("white", "pink", "brown", "babble", "hum")


class SynthesisError(ValueError):
    """A TTS engine is missing or failed, or corpus arguments are invalid (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Voice:
    """One TTS voice.

    Args:
      engine: "espeak" or "flite".
      base: espeak-ng language/accent (e.g. "en-gb-scotland") or flite voice ("slt").
      variant: espeak-ng variant file ("m3", "f2", "klatt", ...); "" for flite.
      rate: espeak words per minute; for flite, 100 / duration_stretch.
      pitch: espeak pitch 0..99; for flite the mean F0 target in Hz.
    """

    engine: str
    base: str
    variant: str
    rate: int
    pitch: int

    @property
    def name(self) -> str:
        if self.engine == "espeak":
            return f"espeak:{self.base}+{self.variant}:s{self.rate}:p{self.pitch}"
        return f"flite:{self.base}:r{self.rate}:f{self.pitch}"

    def command(self, text: str, wav_path: str | None = None) -> list[str]:
        if self.engine == "espeak":
            return ["espeak-ng", "-v", f"{self.base}+{self.variant}", "-s", str(self.rate), "-p", str(self.pitch),
                    "--stdout", text]
        return ["flite", "-voice", self.base, "--setf", f"duration_stretch={100.0 / self.rate:.3f}",
                "--setf", f"int_f0_target_mean={self.pitch}", "-t", text, "-o", wav_path]


_VOICE_NAME = re.compile(r"^(?:espeak:(?P<ebase>[^+:]+)\+(?P<variant>[^:]+):s(?P<speed>\d+):p(?P<epitch>\d+)"
                         r"|flite:(?P<fbase>[^:]+):r(?P<rate>\d+):f(?P<fpitch>\d+))$")


def parse_voice(name: str) -> Voice:
    """The `Voice` whose `.name` is `name` ("espeak:en-us+f1:s170:p60" or "flite:awb:r100:f100")."""
    m = _VOICE_NAME.match(name.strip())
    if m is None:
        raise SynthesisError(f"voice name {name!r}: expected 'espeak:BASE+VARIANT:sRATE:pPITCH' or "
                             "'flite:BASE:rRATE:fPITCH'")
    if m["ebase"]:
        return Voice("espeak", m["ebase"], m["variant"], int(m["speed"]), int(m["epitch"]))
    return Voice("flite", m["fbase"], "", int(m["rate"]), int(m["fpitch"]))


def _e(base, variant, rate, pitch):
    return Voice("espeak", base, variant, rate, pitch)


def _f(base, rate, pitch):
    return Voice("flite", base, "", rate, pitch)


# Distinct base voices / accents / genders first; rate and pitch only add spread on top.
# espeak variant names are file names under espeak-ng-data/voices/!v (case-sensitive; an unknown
# name silently falls back to the default voice, so "michael" is absent: its file is "Michael").
VOICES: tuple[Voice, ...] = (
    _e("en-us", "m1", 165, 45), _e("en-us", "f1", 170, 60), _e("en-us", "klatt", 185, 50),
    _e("en-us", "Andy", 175, 50), _e("en-us", "Annie", 160, 55), _e("en-us", "grandpa", 150, 40),
    _e("en", "m2", 175, 40), _e("en", "f2", 165, 65), _e("en", "david", 180, 50),
    _e("en", "linda", 170, 55), _e("en", "aunty", 160, 50),
    _e("en-gb-scotland", "m3", 160, 50), _e("en-gb-scotland", "f3", 175, 60),
    _e("en-gb-scotland", "robert", 170, 45), _e("en-gb-scotland", "steph", 165, 55),
    _e("en-gb-x-rp", "m4", 155, 45), _e("en-gb-x-rp", "f4", 170, 62), _e("en-gb-x-rp", "edward", 165, 50),
    _e("en-gb-x-rp", "belinda", 160, 58),
    _e("en-029", "m5", 180, 50), _e("en-029", "f5", 170, 60), _e("en-029", "john", 175, 45),
    _e("en-029", "Alicia", 165, 55),
    _e("en-gb-x-gbclan", "m6", 170, 48), _e("en-gb-x-gbclan", "f2", 180, 70), _e("en-gb-x-gbclan", "Lee", 160, 50),
    _e("en-gb-x-gbcwmd", "m7", 175, 42), _e("en-gb-x-gbcwmd", "f1", 160, 58), _e("en-gb-x-gbcwmd", "max", 185, 50),
    _e("en-us-nyc", "m2", 185, 55), _e("en-us-nyc", "f3", 175, 66), _e("en-us-nyc", "paul", 170, 50),
    _e("en-us", "benjamin", 165, 50), _e("en-us", "iven3", 175, 52), _e("en-us", "klatt3", 170, 45),
    _e("en-gb-scotland", "croak", 160, 45),
    _f("kal", 100, 100), _f("kal16", 100, 95), _f("kal16", 110, 125),
    _f("awb", 100, 100), _f("awb", 112, 150), _f("rms", 90, 95), _f("rms", 108, 140),
    _f("slt", 100, 165), _f("slt", 112, 205), _f("slt", 92, 230),
)

EXTRA_TRAIN_VOICE_SETS: dict[str, tuple[Voice, ...]] = {
    # Flite is the engine with few voices (10 of 46; 6 in the default train split, from 4 base
    # voices) and the one unseen test voices fail on. These add flite rate/pitch variants of the
    # bases awb, kal and kal16 only: rms and slt are test speakers, so they get no extra variant.
    "flite8": (_f("awb", 92, 125), _f("awb", 106, 85), _f("awb", 98, 170), _f("kal", 108, 130),
               _f("kal", 94, 80), _f("kal16", 92, 110), _f("kal16", 104, 150), _f("kal16", 115, 90)),
}


def resolve_extra_train_voices(names: Sequence[str]) -> tuple[Voice, ...]:
    """Voices from a list of voice names and/or names of `EXTRA_TRAIN_VOICE_SETS` entries."""
    out: list[Voice] = []
    for name in names:
        out += EXTRA_TRAIN_VOICE_SETS[name] if name in EXTRA_TRAIN_VOICE_SETS else [parse_voice(name)]
    return tuple(dict.fromkeys(out))


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """Knobs of the generator (defaults are the project's default corpus).

    Args:
      eval_fraction: share of `hours` given to dev and to test each (train gets the rest).
      min_eval_utterances: dev and test get at least this many utterances, even for tiny `hours`.
      voice_fractions / sentence_fractions: (dev, test) shares of the voice list (per engine) and
        of each sentence pool.
      noise_prob, snr_db_range: share of utterances with additive noise, and its SNR range in dB
        (density rising linearly towards the upper end).
      reverb_prob, rt60_s_range: share with synthetic reverberation, and its RT60 range (s).
      silence_s_range: leading and trailing silence, each drawn in this range (s).
      level_dbfs_range: speech RMS level before noise, dBFS.
      extra_train_voices: voices added to the train split only, after the voice split (dev and
        test unchanged); none may be in VOICES or share a base voice with a test voice.
    """

    eval_fraction: float = 0.1
    min_eval_utterances: int = 12
    voice_fractions: tuple[float, float] = (0.15, 0.15)
    sentence_fractions: tuple[float, float] = (0.1, 0.1)
    noise_prob: float = 0.8
    snr_db_range: tuple[float, float] = (0.0, 30.0)
    reverb_prob: float = 0.3
    rt60_s_range: tuple[float, float] = (0.15, 0.6)
    silence_s_range: tuple[float, float] = (0.05, 0.5)
    level_dbfs_range: tuple[float, float] = (-30.0, -18.0)
    babble_seconds: float = 8.0
    babble_talkers: int = 5
    extra_train_voices: tuple[Voice, ...] = ()


# ----------------------------------------------------------------------------- engines

def check_engines(voices: Sequence[Voice] = VOICES) -> None:
    """Raises SynthesisError if an engine that `voices` need is not on PATH."""
    binaries = {"espeak": "espeak-ng", "flite": "flite"}
    for engine in sorted({v.engine for v in voices}):
        if shutil.which(binaries[engine]) is None:
            raise SynthesisError(f"TTS engine '{binaries[engine]}' not found on PATH; install the Debian package "
                                 f"'{binaries[engine]}'")


def resample_to_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Polyphase resampling to 16 kHz: float64 `[N]` -> float64 `[N * 16000 / sample_rate]`."""
    if sample_rate == SAMPLE_RATE_HZ:
        return samples
    g = math.gcd(SAMPLE_RATE_HZ, sample_rate)
    return scipy.signal.resample_poly(samples, SAMPLE_RATE_HZ // g, sample_rate // g)


def synthesize(voice: Voice, text: str, tmp_dir: str | None = None) -> np.ndarray:
    """Speaks `text` with `voice`. Returns float64 `[N]` at 16 kHz (raw engine level)."""
    tmp_path = None
    try:
        if voice.engine == "flite":
            fd, tmp_path = tempfile.mkstemp(suffix=".wav", dir=tmp_dir)
            os.close(fd)
        proc = subprocess.run(voice.command(text, tmp_path), capture_output=True)
        if proc.returncode != 0:
            raise SynthesisError(f"{voice.name}: engine failed on {text!r} (exit {proc.returncode}: "
                                 f"{proc.stderr.decode(errors='replace').strip()[:200]})")
        source = io.BytesIO(proc.stdout) if tmp_path is None else tmp_path
        data, rate = soundfile.read(source, dtype="float64", always_2d=True)
    finally:
        if tmp_path is not None and os.path.exists(tmp_path):
            os.remove(tmp_path)
    if data.shape[0] == 0:
        raise SynthesisError(f"{voice.name}: engine produced no audio for {text!r}")
    return resample_to_16k(data.mean(axis=1), rate)


# ----------------------------------------------------------------------------- noise, reverb

def colored_noise(rng: np.random.Generator, num_samples: int, exponent: float) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown). `[N]` float64."""
    n_fft = scipy.fft.next_fast_len(num_samples, real=True)  # a prime length would make the FFT slow
    spectrum = scipy.fft.rfft(rng.standard_normal(n_fft))
    freqs = scipy.fft.rfftfreq(n_fft, d=1.0 / SAMPLE_RATE_HZ)
    # Below 20 Hz the 1/f shape is flattened, so brown noise has no huge DC drift.
    spectrum *= np.maximum(freqs, 20.0) ** (-exponent / 2.0)
    noise = scipy.fft.irfft(spectrum, n=n_fft)[:num_samples]
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def hum_noise(rng: np.random.Generator, num_samples: int) -> np.ndarray:
    """Mains hum (50 or 60 Hz with decaying odd/even harmonics), unit RMS. `[N]` float64."""
    base = 50.0 if rng.random() < 0.5 else 60.0
    t = np.arange(num_samples) / SAMPLE_RATE_HZ
    hum = np.zeros(num_samples)
    for k in range(1, 8):
        hum += rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi))
    hum += 0.05 * rng.standard_normal(num_samples)
    return hum / (np.sqrt(np.mean(hum**2)) + 1e-12)


def noise_of_type(rng: np.random.Generator, kind: str, num_samples: int, babble: np.ndarray) -> np.ndarray:
    """Unit-RMS noise of `kind` (one of NOISE_TYPES), `[num_samples]` float64."""
    if kind == "white":
        return colored_noise(rng, num_samples, 0.0)
    if kind == "pink":
        return colored_noise(rng, num_samples, 1.0)
    if kind == "brown":
        return colored_noise(rng, num_samples, 2.0)
    if kind == "hum":
        return hum_noise(rng, num_samples)
    if kind == "babble":
        start = int(rng.integers(len(babble)))
        reps = num_samples // len(babble) + 2
        segment = np.tile(babble, reps)[start:start + num_samples]
        return segment / (np.sqrt(np.mean(segment**2)) + 1e-12)
    raise ValueError(f"unknown noise type {kind!r}; expected one of {NOISE_TYPES}")


def add_noise(speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_power: float | None = None) -> np.ndarray:
    """speech + noise scaled so that 10*log10(P_speech / P_noise) = snr_db. Shapes `[N]`."""
    if speech_power is None:
        speech_power = np.mean(speech**2)
    noise_power = np.mean(noise**2) + 1e-20
    return speech + noise * np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))


def reverb_impulse_response(rng: np.random.Generator, rt60_s: float) -> np.ndarray:
    """Synthetic room response: direct path + exponentially decaying noise tail (-60 dB at rt60_s)."""
    length = max(2, int(rt60_s * SAMPLE_RATE_HZ))
    t = np.arange(length) / SAMPLE_RATE_HZ
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60_s)  # ln(1000) = 6.9078: -60 dB
    tail[: int(0.002 * SAMPLE_RATE_HZ)] = 0.0  # first reflections arrive after ~2 ms
    tail *= rng.uniform(0.2, 0.6) / (np.sqrt(np.sum(tail**2)) + 1e-12)  # direct-to-reverberant ratio
    tail[0] = 1.0
    return tail


def reverberate(rng: np.random.Generator, samples: np.ndarray, rt60_s: float) -> np.ndarray:
    """Convolves with `reverb_impulse_response`; output keeps the input length `[N]`."""
    return scipy.signal.fftconvolve(samples, reverb_impulse_response(rng, rt60_s))[: len(samples)]


# ----------------------------------------------------------------------------- planning

def split_voices(seed: int, voices: Sequence[Voice] = VOICES,
                 fractions: tuple[float, float] = (0.15, 0.15)) -> dict[str, list[Voice]]:
    """Disjoint voice lists per split, stratified per engine so every split has every engine."""
    rng = np.random.default_rng([seed, 1])
    out = {s: [] for s in SPLITS}
    for engine in sorted({v.engine for v in voices}):
        group = [v for v in voices if v.engine == engine]
        order = rng.permutation(len(group))
        n_dev = max(1, round(fractions[0] * len(group)))
        n_test = max(1, round(fractions[1] * len(group)))
        if n_dev + n_test >= len(group):
            raise SynthesisError(f"engine {engine} has {len(group)} voices; need more than {n_dev + n_test}")
        out["dev"] += [group[i] for i in order[:n_dev]]
        out["test"] += [group[i] for i in order[n_dev:n_dev + n_test]]
        out["train"] += [group[i] for i in order[n_dev + n_test:]]
    return out


def check_extra_train_voices(extra: Sequence[Voice], voices: dict[str, list[Voice]]) -> None:
    """Raises SynthesisError if a voice of `extra` is in VOICES or shares (engine, base) with a
    voice of `voices["test"]`."""
    known = {v.name for v in VOICES}
    test_bases = {(v.engine, v.base) for v in voices["test"]}
    for v in extra:
        if v.name in known:
            raise SynthesisError(f"extra_train_voices: {v.name} is already in VOICES; expected a new voice")
        if (v.engine, v.base) in test_bases:
            raise SynthesisError(f"extra_train_voices: {v.name} shares the base voice '{v.base}' with the test "
                                 "split; expected a base voice no test voice uses")


def _interleave_by_engine(rng: np.random.Generator, voices: list[Voice]) -> list[Voice]:
    """Shuffled voices, engines spread evenly along the list (so short prefixes hold every engine)."""
    groups = {}
    for v in voices:
        groups.setdefault(v.engine, []).append(v)
    keyed = []
    for engine, group in sorted(groups.items()):
        order = rng.permutation(len(group))
        keyed += [((k + 0.5) / len(group), engine, group[i]) for k, i in enumerate(order)]
    return [v for _, _, v in sorted(keyed, key=lambda x: (x[0], x[1]))]


def split_sentences(seed: int, pool: Sequence[str], fractions: tuple[float, float],
                    exclude: frozenset = frozenset()) -> dict[str, list[str]]:
    """Disjoint, shuffled sentence lists per split."""
    sentences = [s for s in dict.fromkeys(pool) if s not in exclude]
    order = np.random.default_rng(seed).permutation(len(sentences))
    n_dev, n_test = (max(1, int(f * len(sentences))) for f in fractions)
    shuffled = [sentences[i] for i in order]
    return {"dev": shuffled[:n_dev], "test": shuffled[n_dev:n_dev + n_test], "train": shuffled[n_dev + n_test:]}


def _estimate_seconds(text: str, voice: Voice, config: CorpusConfig) -> float:
    # ~0.062 s per character at 175 wpm (espeak-ng and flite measured within ~15%).
    speech = 0.062 * len(text) * (175.0 / voice.rate if voice.engine == "espeak" else 100.0 / voice.rate)
    return speech + sum(config.silence_s_range)


@functools.lru_cache(maxsize=4)
def _open_pool(fortunes_dir: str | None) -> tuple[str, ...]:
    return tuple(fortune_sentences(fortunes_dir) if fortunes_dir else fortune_sentences())


def sentence_pools(hours: float, seed: int, config: CorpusConfig = CorpusConfig(),
                   fortunes_dir: str | None = None) -> dict[str, dict[str, list[str]]]:
    """{domain: {split: sentences}}: the disjoint sentence lists a corpus of `hours` and `seed`
    draws its transcripts from (voices and `extra_train_voices` do not change them). The train
    lists hold more sentences than the train audio speaks (at 8 hours: 16.1k fortune sentences and
    9.2k commands, of which ~3.2k each are spoken), the rest being text-only training data."""
    open_pool = _open_pool(fortunes_dir)
    open_split = split_sentences(seed * 7 + 2, open_pool, config.sentence_fractions)
    needed_commands = max(3000, int(hours * 3600 / 2.5))
    command_pool = command_sentences(seed * 7 + 3, min(needed_commands, 200_000))
    command_split = split_sentences(seed * 7 + 4, command_pool, config.sentence_fractions, frozenset(open_pool))
    return {"open": open_split, "command": command_split}


@dataclasses.dataclass(frozen=True)
class _Job:
    split: str
    index: int
    text: str
    domain: str
    voice: Voice
    seed: int
    rel_path: str


def plan_corpus(hours: float, seed: int, config: CorpusConfig = CorpusConfig(),
                fortunes_dir: str | None = None) -> tuple[list[_Job], dict[str, list[Voice]], dict]:
    """Deterministic list of utterances to synthesise; also returns voices per split and pools."""
    voices = split_voices(seed, VOICES, config.voice_fractions)
    check_extra_train_voices(config.extra_train_voices, voices)
    voices["train"] = voices["train"] + list(config.extra_train_voices)
    pools = sentence_pools(hours, seed, config, fortunes_dir)
    total_s = hours * 3600.0
    targets = {"train": total_s * (1.0 - 2 * config.eval_fraction),
               "dev": total_s * config.eval_fraction, "test": total_s * config.eval_fraction}
    jobs = []
    for split_index, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, 100 + split_index])
        order = _interleave_by_engine(rng, voices[split])
        cursors = {d: 0 for d in DOMAINS}
        shuffles = {d: list(pools[d][split]) for d in DOMAINS}
        spent, index = 0.0, 0
        min_count = config.min_eval_utterances if split != "train" else 2
        while spent < targets[split] or index < min_count:
            domain = DOMAINS[index % 2]
            pool = shuffles[domain]
            if cursors[domain] == len(pool):  # pool used up: reuse its sentences in a new order
                pool[:] = [pool[i] for i in rng.permutation(len(pool))]
                cursors[domain] = 0
            text = pool[cursors[domain]]
            cursors[domain] += 1
            voice = order[index % len(order)]
            job_seed = int(rng.integers(2**63 - 1))
            jobs.append(_Job(split, index, text, domain, voice, job_seed, f"audio/{split}/{split}_{index:06d}.wav"))
            spent += _estimate_seconds(text, voice, config)
            index += 1
    return jobs, voices, pools


# ----------------------------------------------------------------------------- rendering

_WORKER_STATE: dict = {}


def _init_worker(out_dir: str, config: CorpusConfig, babble: dict[str, np.ndarray]) -> None:
    _WORKER_STATE.update(out_dir=out_dir, config=config, babble=babble,
                         tmp_dir=tempfile.mkdtemp(prefix="tts-", dir=os.path.join(out_dir, ".tmp")))


def render_utterance(job: _Job, config: CorpusConfig, babble: np.ndarray,
                     tmp_dir: str | None = None) -> tuple[np.ndarray, dict]:
    """Synthesises and augments one utterance.

    Returns:
      (float64 `[N]` at 16 kHz in [-1, 1], augmentation record: noise type or "", snr_db, rt60_s or 0).
    """
    rng = np.random.default_rng(job.seed)
    speech = synthesize(job.voice, job.text, tmp_dir)
    level = 10.0 ** (rng.uniform(*config.level_dbfs_range) / 20.0)
    speech_power = np.mean(speech**2) + 1e-20
    speech *= level / np.sqrt(speech_power)
    speech_power = level**2
    lead, trail = (int(rng.uniform(*config.silence_s_range) * SAMPLE_RATE_HZ) for _ in range(2))
    x = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    info = {"noise": "", "snr_db": None, "rt60_s": 0.0}
    if rng.random() < config.reverb_prob:
        info["rt60_s"] = float(rng.uniform(*config.rt60_s_range))
        x = reverberate(rng, x, info["rt60_s"])
    if rng.random() < config.noise_prob:
        info["noise"] = NOISE_TYPES[int(rng.integers(len(NOISE_TYPES)))]
        noise = noise_of_type(rng, info["noise"], len(x), babble)
        lo, hi = config.snr_db_range
        # Density rising linearly towards `hi`: the whole range is covered, but few utterances are
        # drowned (P(SNR < 5 dB) = 2.8% for 0..30 dB, mean 20 dB).
        info["snr_db"] = float(lo + (hi - lo) * np.sqrt(rng.random()))
        x = add_noise(x, noise, info["snr_db"], speech_power)
    peak = np.max(np.abs(x))
    if peak > 0.99:
        x *= 0.99 / peak
    return x, info


def _render_and_write(job: _Job) -> tuple[int, int, dict]:
    state = _WORKER_STATE
    x, info = render_utterance(job, state["config"], state["babble"][job.split], state["tmp_dir"])
    audio_lib.write_wav(os.path.join(state["out_dir"], job.rel_path), x, SAMPLE_RATE_HZ)
    return job.index, len(x), info


def make_babble(seed: int, voices: Sequence[Voice], sentences: Sequence[str], config: CorpusConfig,
                tmp_dir: str | None = None) -> np.ndarray:
    """Multi-talker babble: `babble_talkers` utterances (distinct voices where possible), each looped
    to `babble_seconds` with a random offset, summed. Unit RMS, float64 `[babble_seconds * 16000]`."""
    rng = np.random.default_rng(seed)
    n = int(config.babble_seconds * SAMPLE_RATE_HZ)
    mix = np.zeros(n)
    order = rng.permutation(len(voices))
    for talker in range(config.babble_talkers):
        voice = voices[int(order[talker % len(order)])]
        y = synthesize(voice, sentences[int(rng.integers(len(sentences)))], tmp_dir)
        y = np.tile(y / (np.sqrt(np.mean(y**2)) + 1e-12), n // len(y) + 1)[:n]
        mix += np.roll(y, int(rng.integers(n)))
    return mix / (np.sqrt(np.mean(mix**2)) + 1e-12)


class _Progress:
    """One status line on stderr: done/total, seconds of audio per wall second, ETA."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.start, self.last = total, enabled, time.monotonic(), 0.0
        self.done, self.audio_s = 0, 0.0

    def update(self, audio_s: float) -> None:
        self.done += 1
        self.audio_s += audio_s
        now = time.monotonic()
        if self.enabled and (now - self.last > 1.0 or self.done == self.total):
            self.last = now
            elapsed = max(now - self.start, 1e-6)
            eta = elapsed / self.done * (self.total - self.done)
            sys.stderr.write(f"\r[make_corpus] {self.done}/{self.total} utterances  {self.audio_s / 3600:.3f} h audio  "
                             f"{self.audio_s / elapsed:.1f} s audio/s  elapsed {elapsed:.0f} s  ETA {eta:.0f} s ")
            if self.done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _remove_stale_audio(out_dir: str, keep: set[str]) -> None:
    """Deletes `audio/{split}/{split}_NNNNNN.wav` left by an earlier, larger run (only our own names)."""
    for split in SPLITS:
        folder = os.path.join(out_dir, "audio", split)
        for name in os.listdir(folder):
            if re.fullmatch(rf"{split}_\d{{6}}\.wav", name) and f"audio/{split}/{name}" not in keep:
                os.remove(os.path.join(folder, name))


def _write_jsonl(path: str, records: list[dict]) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def generate_corpus(out_dir: str, hours: float, seed: int, num_workers: int | None = None, progress: bool = True,
                    config: CorpusConfig = CorpusConfig(), fortunes_dir: str | None = None) -> dict:
    """Generates the default corpus under `out_dir` (see module docstring for the layout).

    Args:
      out_dir: output folder (created; existing audio of the same names is overwritten).
      hours: target total hours (train gets 1 - 2 * eval_fraction of it; dev/test never fewer than
        `config.min_eval_utterances` utterances, so tiny values such as 0.01 work).
      seed: every random choice derives from it.
      num_workers: parallel processes (default: CPU count); 1 renders in this process.
      progress: print a progress line (rate, ETA) to stderr.

    Returns:
      The summary dict also written to `summary.json`.
    """
    if not (isinstance(hours, (int, float)) and math.isfinite(hours) and hours > 0):
        raise SynthesisError(f"hours must be a positive number, got {hours!r}")
    if not isinstance(seed, int) or seed < 0:
        raise SynthesisError(f"seed must be a non-negative integer, got {seed!r}")
    num_workers = num_workers or os.cpu_count() or 1
    if num_workers < 1:
        raise SynthesisError(f"num_workers must be >= 1, got {num_workers}")
    check_engines(VOICES + tuple(config.extra_train_voices))
    start = time.monotonic()
    jobs, voices, pools = plan_corpus(hours, seed, config, fortunes_dir)
    try:
        for split in SPLITS:
            os.makedirs(os.path.join(out_dir, "audio", split), exist_ok=True)
        os.makedirs(os.path.join(out_dir, ".tmp"), exist_ok=True)
    except OSError as e:
        raise SynthesisError(f"{out_dir}: cannot create the output folder ({e.strerror}); "
                             "expected a writable folder") from None
    babble_tmp = tempfile.mkdtemp(prefix="babble-", dir=os.path.join(out_dir, ".tmp"))
    # Babble of each split uses only that split's voices and sentences, so no test voice leaks into train.
    babble = {split: make_babble(seed * 31 + i, voices[split], pools["open"][split], config, babble_tmp)
              for i, split in enumerate(SPLITS)}
    lengths: dict[tuple[str, int], int] = {}
    augmentations: list[dict] = []
    bar = _Progress(len(jobs), progress)
    if num_workers == 1:
        _init_worker(out_dir, config, babble)
        for job in jobs:
            index, n, info = _render_and_write(job)
            lengths[(job.split, index)] = n
            augmentations.append(info)
            bar.update(n / SAMPLE_RATE_HZ)
    else:
        # forkserver: workers never inherit threads of the caller (e.g. TensorFlow's) as fork would.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        with ctx.Pool(num_workers, initializer=_init_worker, initargs=(out_dir, config, babble)) as pool:
            for job, (index, n, info) in zip(jobs, pool.imap(_render_and_write, jobs, chunksize=4)):
                lengths[(job.split, index)] = n
                augmentations.append(info)
                bar.update(n / SAMPLE_RATE_HZ)
    shutil.rmtree(os.path.join(out_dir, ".tmp"), ignore_errors=True)
    _remove_stale_audio(out_dir, {j.rel_path for j in jobs})
    wall_s = time.monotonic() - start

    summary = {"seed": seed, "requested_hours": hours, "splits": {}, "domains": {},
               "num_voices": len(VOICES), "engines": sorted({v.engine for v in VOICES})}
    if config.extra_train_voices:  # absent otherwise, so the default corpus' summary is unchanged
        summary["extra_train_voices"] = [v.name for v in config.extra_train_voices]
    for split in SPLITS:
        records = []
        for job in (j for j in jobs if j.split == split):
            duration = lengths[(split, job.index)] / SAMPLE_RATE_HZ
            records.append({"audio_filepath": job.rel_path, "duration": round(duration, 4), "text": job.text,
                            "voice": job.voice.name, "domain": job.domain})
        _write_jsonl(os.path.join(out_dir, f"{split}.jsonl"), records)
        per_domain = {}
        for domain in DOMAINS:
            rs = [r for r in records if r["domain"] == domain]
            per_domain[domain] = {"utterances": len(rs), "hours": round(sum(r["duration"] for r in rs) / 3600, 5),
                                  "num_voices": len({r["voice"] for r in rs})}
        used = sorted({r["voice"] for r in records})
        summary["splits"][split] = {
            "utterances": len(records), "hours": round(sum(r["duration"] for r in records) / 3600, 5),
            "sentences": len({r["text"] for r in records}), "num_voices": len(used), "voices": used,
            "engines": sorted({v.split(":")[0] for v in used}), "domains": per_domain}
    for domain in DOMAINS:
        summary["domains"][domain] = {
            "utterances": sum(summary["splits"][s]["domains"][domain]["utterances"] for s in SPLITS),
            "hours": round(sum(summary["splits"][s]["domains"][domain]["hours"] for s in SPLITS), 5)}
    summary["utterances"] = sum(summary["splits"][s]["utterances"] for s in SPLITS)
    summary["hours"] = round(sum(summary["splits"][s]["hours"] for s in SPLITS), 5)
    summary["voices_used"] = sum(summary["splits"][s]["num_voices"] for s in SPLITS)
    snrs = [a["snr_db"] for a in augmentations if a["noise"]]
    summary["augmentation"] = {
        "noise": {kind: sum(a["noise"] == kind for a in augmentations) for kind in NOISE_TYPES},
        "clean": sum(not a["noise"] for a in augmentations),
        "reverb": sum(a["rt60_s"] > 0 for a in augmentations),
        "snr_db_quantiles_10_50_90": [round(float(q), 2) for q in np.quantile(snrs, [0.1, 0.5, 0.9])] if snrs else []}
    with open(os.path.join(out_dir, "summary.json.tmp"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    os.replace(os.path.join(out_dir, "summary.json.tmp"), os.path.join(out_dir, "summary.json"))
    # Timing is returned but not written, so summary.json is identical for identical seeds.
    result = dict(summary)
    result["generation"] = {"wall_seconds": round(wall_s, 2), "num_workers": num_workers,
                            "audio_seconds_per_wall_second": round(summary["hours"] * 3600 / max(wall_s, 1e-6), 2)}
    return result


def ensure_default_corpus(corpus_dir: str, hours: float, seed: int,
                          extra_train_voices: Sequence[str] = ()) -> dict | None:
    """Generates the default corpus under `corpus_dir` unless its three manifests already exist.

    An existing corpus is left untouched (whatever `hours`/`seed` say), but it must have been made
    with the same `extra_train_voices` (voice or set names, as `make_corpus --extra_train_voices`
    takes them): a corpus whose `summary.json` lists other extra voices, or that has no summary
    when extra voices are asked for, raises `SynthesisError` instead of silently training on other
    data. Returns the corpus summary: the fresh one, else the stored `summary.json`, else None
    (manifests present, no summary, no extra voices asked for).
    """
    extra = resolve_extra_train_voices(extra_train_voices)
    wanted = [v.name for v in extra]
    if all(os.path.exists(os.path.join(corpus_dir, f"{s}.jsonl")) for s in SPLITS):
        summary_path = os.path.join(corpus_dir, "summary.json")
        if not os.path.exists(summary_path):
            if wanted:
                raise SynthesisError(f"{summary_path}: missing, so the corpus' extra training voices cannot "
                                     f"be checked against the {len(wanted)} asked for; regenerate it or "
                                     f"drop the extra voices")
            return None
        with open(summary_path, encoding="utf-8") as f:
            summary = json.load(f)
        found = list(summary.get("extra_train_voices", []))
        if found != wanted:
            raise SynthesisError(f"{summary_path}: extra_train_voices is {found or 'none'}, expected "
                                 f"{wanted or 'none'}; use another corpus folder or matching "
                                 f"extra training voices")
        return summary
    from absl import logging
    logging.info("generating the default corpus (%.2f h%s) under %s", hours,
                 f", {len(extra)} extra training voices" if extra else "", corpus_dir)
    return generate_corpus(corpus_dir, hours=hours, seed=seed, config=CorpusConfig(extra_train_voices=extra))


def format_summary(summary: dict) -> str:
    """A plain-text table of a `generate_corpus` summary."""
    lines = [f"{'split':<6} {'utts':>6} {'hours':>8} {'voices':>6} {'sentences':>9} {'open':>6} {'command':>7}  engines"]
    for split in SPLITS:
        s = summary["splits"][split]
        lines.append(f"{split:<6} {s['utterances']:>6} {s['hours']:>8.4f} {s['num_voices']:>6} {s['sentences']:>9} "
                     f"{s['domains']['open']['utterances']:>6} {s['domains']['command']['utterances']:>7}  "
                     f"{','.join(s['engines'])}")
    lines.append(f"{'total':<6} {summary['utterances']:>6} {summary['hours']:>8.4f} {summary['voices_used']:>6}")
    if "augmentation" in summary:
        a = summary["augmentation"]
        lines.append(f"augmentation: clean {a['clean']}, " + ", ".join(f"{k} {v}" for k, v in a["noise"].items())
                     + f"; reverb {a['reverb']}; SNR dB p10/p50/p90 {a['snr_db_quantiles_10_50_90']}")
    if "generation" in summary:
        g = summary["generation"]
        lines.append(f"generated in {g['wall_seconds']:.1f} s wall with {g['num_workers']} worker(s): "
                     f"{g['audio_seconds_per_wall_second']:.1f} s of audio per second")
    return "\n".join(lines)
