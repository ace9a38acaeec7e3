"""tf.data input pipeline: utterances → (validated, sharded, shuffled) → audio → log-mel → ids → buckets.

Order: validate the whole list in Python (missing/unreadable files, wrong rate/channels, audio
shorter than one frame, empty or unencodable text) → shard by `InputContext` → shuffle file
indices (seeded) → decode audio → speed perturbation (training, optional) → log-mel → VTLP
(training, optional) → in-graph SentencePiece → bucket by length → padded batch →
SpecAugment (stateless, seeded per batch) → prefetch.

WAV files in 16-bit PCM are decoded in-graph with `tf.audio.decode_wav` (no GIL; 1.2-2.5x the
throughput of `soundfile` via `tf.numpy_function` in experiments/benchmark_data.py); anything else
(FLAC, OGG, SPHERE, float WAV) goes through `tf_todm.data.audio.load_audio` in a `tf.numpy_function`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Sequence

import numpy as np
import soundfile
import tensorflow as tf
from absl import logging

from tf_todm.constants import BLANK_ID, SAMPLE_RATE_HZ
from tf_todm.data import speed_perturbation
from tf_todm.data import vtlp as vtlp_module
from tf_todm.data.audio import AudioError, check_wav_complete
from tf_todm.data.features import FRAME_LENGTH, LogMelSpectrogram, frames_for_samples
from tf_todm.data.manifest import Utterance
from tf_todm.data.tokenizer import Tokenizer, TokenizerError


class DataError(ValueError):
    """An utterance the pipeline cannot use; the message names the manifest entry and the reason."""


@dataclasses.dataclass
class DataReport:
    """What validation kept and dropped. `dropped` holds `(where, reason)` pairs."""

    kept: list
    num_samples: list
    decoder: str
    dropped: list = dataclasses.field(default_factory=list)

    @property
    def num_dropped(self) -> int:
        return len(self.dropped)

    @property
    def seconds(self) -> float:
        return float(sum(self.num_samples)) / SAMPLE_RATE_HZ


def utterance_seconds(utterances: Sequence[Utterance]) -> float:
    """Total duration in seconds (from the manifest's `duration` fields)."""
    return float(sum(u.duration for u in utterances))


def utterance_hours(utterances: Sequence[Utterance]) -> float:
    return utterance_seconds(utterances) / 3600.0


def default_bucket_boundaries_s(durations_s: Sequence[float], num_buckets: int = 8) -> list[float]:
    """Bucket upper bounds in seconds at duration quantiles (`num_buckets - 1` interior bounds, deduplicated)."""
    d = np.asarray(durations_s, np.float64)
    if d.size == 0 or num_buckets < 2:
        return []
    qs = np.quantile(d, np.arange(1, num_buckets) / num_buckets)
    return sorted({round(float(q), 2) for q in qs if d.min() < q < d.max()})


def _where(utterance: Utterance, index: int) -> str:
    """'train.jsonl:12 (/abs/a.wav)' for utterances read from a manifest, else 'utterance #i (...)'."""
    return f"{utterance.source or f'utterance #{index}'} ({utterance.audio_filepath})"


def validate_utterances(utterances: Sequence[Utterance], tokenizer: Tokenizer, drop_bad: str = "raise") -> DataReport:
    """Checks every utterance before any dataset is built (file headers only, no decoding).

    Raises DataError naming the first bad entry (`drop_bad="raise"`), or drops and counts the bad
    ones (`"skip"`). `decoder` is "wav" when every kept file is 16-bit PCM WAV, else "soundfile"
    (`make_dataset` then records the decoder it actually used).
    """
    if drop_bad not in ("raise", "skip"):
        raise ValueError(f"make_dataset: drop_bad must be 'raise' or 'skip', got {drop_bad!r}")
    kept, num_samples, dropped, all_pcm16_wav = [], [], [], True
    for i, u in enumerate(utterances):
        where = _where(u, i)
        reason, info = None, None
        if not os.path.isfile(u.audio_filepath):
            reason = "audio file does not exist"
        else:
            try:
                check_wav_complete(u.audio_filepath)
                info = soundfile.info(u.audio_filepath)
            except AudioError as e:
                reason = str(e)[len(u.audio_filepath) + 2:]
            except (soundfile.LibsndfileError, RuntimeError, TypeError) as e:
                if not u.audio_filepath.lower().endswith(".sph"):
                    reason = f"not a readable audio file ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
            if info is not None:
                if info.samplerate != SAMPLE_RATE_HZ:
                    reason = f"sample rate is {info.samplerate} Hz; expected {SAMPLE_RATE_HZ} Hz"
                elif info.channels != 1:
                    reason = f"audio has {info.channels} channels; expected mono"
                elif info.frames < FRAME_LENGTH:
                    reason = f"audio has {info.frames} samples; expected at least {FRAME_LENGTH} (one 25 ms frame)"
        if reason is None:
            try:
                tokenizer.check_encodable(u.text, where)
            except TokenizerError as e:
                reason = str(e)[len(where) + 2:]
        if reason is not None:
            if drop_bad == "raise":
                raise DataError(f"{where}: {reason}")
            dropped.append((where, reason))
            continue
        if info is None or not (info.format == "WAV" and info.subtype == "PCM_16"):
            all_pcm16_wav = False
        kept.append(u)
        num_samples.append(int(info.frames) if info is not None else int(round(u.duration * SAMPLE_RATE_HZ)))
    if dropped:
        logging.warning("make_dataset: dropped %d of %d utterances (first: %s: %s)", len(dropped),
                        len(utterances), *dropped[0])
    if not kept:
        raise DataError(f"make_dataset: no usable utterances out of {len(utterances)}")
    return DataReport(kept, num_samples, "wav" if all_pcm16_wav else "soundfile", dropped)


def _load_audio_np(path: bytes) -> np.ndarray:
    from tf_todm.data.audio import load_audio

    return load_audio(path.decode("utf-8"))


def decode_audio_fn(decoder: str) -> Callable[[tf.Tensor], tf.Tensor]:
    """tf.string path → float32 `[N]` waveform, in-graph ("wav") or via soundfile ("soundfile")."""
    if decoder == "wav":
        def decode(path):
            audio, _ = tf.audio.decode_wav(tf.io.read_file(path), desired_channels=1)
            return audio[:, 0]
    elif decoder == "soundfile":
        def decode(path):
            audio = tf.numpy_function(_load_audio_np, [path], tf.float32, stateful=False)
            return tf.ensure_shape(audio, [None])
    else:
        raise ValueError(f"decoder must be 'wav' or 'soundfile', got {decoder!r}")
    return decode


def _batch_sizes(boundaries_frames, max_frames, batch_size, max_batch_seconds):
    if batch_size is not None:
        return [int(batch_size)] * (len(boundaries_frames) + 1)
    uppers = list(boundaries_frames) + [max(max_frames, (boundaries_frames or [0])[-1]) + 1]
    # a bucket holds lengths < upper; padded batch seconds = batch * (upper - 1) frames * 10 ms
    return [max(1, int(max_batch_seconds // (max(upper - 1, 1) * 0.01))) for upper in uppers]


def make_dataset(utterances: Sequence[Utterance], tokenizer: Tokenizer, *, batch_size: int | None = None,
                 max_batch_seconds: float | None = None, training: bool, input_context=None, seed: int = 0,
                 specaugment=None, feature_layer=None, bucket_boundaries_s: Sequence[float] | None = None,
                 drop_bad: str = "raise", cache_features: bool = False, decoder: str | None = None,
                 shuffle_buffer_size: int | None = None, num_parallel_calls=tf.data.AUTOTUNE,
                 prefetch: bool = True, speed_perturb: float = 0.0, vtlp: float = 0.0) -> tf.data.Dataset:
    """Builds the batched dataset of dicts (see module docstring for the order of steps).

    Args:
        utterances: list of `Utterance`.
        tokenizer: `Tokenizer`; labels are its ids (no blank), padded with BLANK_ID.
        batch_size: GLOBAL utterances per batch; or
        max_batch_seconds: GLOBAL padded audio seconds per batch (per-bucket batch sizes).
            With `input_context`, both are divided by `num_replicas_in_sync`.
        training: shuffle (seeded, reshuffled each epoch) and apply `specaugment`.
        input_context: `tf.distribute.InputContext`; shards the utterance list before decoding.
        seed: int; the same seed gives the same batches, epoch after epoch.
        specaugment: optional `SpecAugment` layer, applied per batch with stateless seeds (training only).
        feature_layer: waveform `[1, N]` → `[1, T, F]`; default `LogMelSpectrogram()`.
        bucket_boundaries_s: bucket upper bounds in seconds; default: duration octiles.
        drop_bad: "raise" (DataError naming the entry) or "skip" (drop, count in `dataset.data_report`).
        cache_features: compute every (shard's) features once at construction and keep them in memory.
        decoder: "wav" (tf.audio.decode_wav) or "soundfile"; default: "wav" when all files are PCM16 WAV.
        speed_perturb: training only: each utterance's audio is played at a speed factor drawn
            uniformly in [1 - speed_perturb, 1 + speed_perturb] (`speed_perturbation`), a pure
            function of (seed, utterance index). 0 = off. Not with `cache_features`.
        vtlp: training only: each utterance's log-mel features are warped along the frequency axis
            by a factor drawn uniformly in [1 - vtlp, 1 + vtlp] (`vtlp.vtlp_log_mel`, vocal tract
            length perturbation), a pure function of (seed, utterance index). 0 = off.

    Returns:
        `tf.data.Dataset` of `{"features": f32 [B,T,F], "feature_lengths": i32 [B], "labels": i32 [B,U],
        "label_lengths": i32 [B], "text": tf.string [B]}`, with a `data_report` attribute (`DataReport`).
    """
    if (batch_size is None) == (max_batch_seconds is None):
        raise ValueError("make_dataset: give exactly one of batch_size and max_batch_seconds")
    report = validate_utterances(utterances, tokenizer, drop_bad)
    decoder = decoder or report.decoder
    if decoder == "wav" and report.decoder != "wav":
        raise ValueError("make_dataset: decoder='wav' needs every file to be 16-bit PCM WAV")
    kept, num_samples = report.kept, report.num_samples
    if input_context is not None:
        if batch_size is not None:
            batch_size = input_context.get_per_replica_batch_size(batch_size)
        else:
            max_batch_seconds = max_batch_seconds / input_context.num_replicas_in_sync
        pid, num = input_context.input_pipeline_id, input_context.num_input_pipelines
        kept, num_samples = kept[pid::num], num_samples[pid::num]
        if not kept:
            raise DataError(f"make_dataset: input pipeline {pid} of {num} has no utterances")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"make_dataset: batch_size must be >= 1, got {batch_size}")

    feature_layer = feature_layer or LogMelSpectrogram()
    decode = decode_audio_fn(decoder)
    perturb = bool(training and speed_perturb)
    if perturb and cache_features:
        raise ValueError("make_dataset: speed_perturb needs the audio of every epoch; not with cache_features")

    def featurize(path, index=None):
        audio = decode(path)
        if perturb:
            audio = speed_perturbation.speed_perturb(
                audio, speed_perturbation.random_speed_factor(seed, index, speed_perturb))
        return feature_layer(audio[None, :])[0]  # (T, F)

    paths = [u.audio_filepath for u in kept]
    texts = [u.text for u in kept]
    n = len(kept)
    ds = tf.data.Dataset.range(n)
    if training:
        ds = ds.shuffle(shuffle_buffer_size or n, seed=seed, reshuffle_each_iteration=True)

    if cache_features:
        cache = _compute_features(paths, featurize, num_parallel_calls)
        num_bins = cache[0].shape[-1]

        def lookup(i):
            f = tf.numpy_function(lambda j: cache[int(j)], [i], tf.float32, stateful=False)
            return tf.ensure_shape(f, [None, num_bins])
        get_features = lookup
    else:
        paths_t = tf.constant(paths)

        def get_features(i):
            return featurize(tf.gather(paths_t, i), i)

    texts_t = tf.constant(texts)

    warp = bool(training and vtlp)
    if warp:
        vtlp_module.check_max_change(vtlp, "make_dataset")

    def load(i):
        feats = get_features(i)
        if warp:
            feats = vtlp_module.vtlp_log_mel(feats, vtlp_module.random_vtlp_factor(seed, i, vtlp))
        text = tf.gather(texts_t, i)
        labels = tf.cast(tokenizer.tf_tokenize(text), tf.int32)
        return {"features": feats, "feature_lengths": tf.shape(feats)[0], "labels": labels,
                "label_lengths": tf.shape(labels)[0], "text": text}

    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)

    durations = [s / SAMPLE_RATE_HZ for s in num_samples]
    if bucket_boundaries_s is None:
        bucket_boundaries_s = default_bucket_boundaries_s(durations)
    boundaries = sorted({frames_for_samples(int(round(s * SAMPLE_RATE_HZ))) + 1 for s in bucket_boundaries_s})
    boundaries = [b for b in boundaries if b > 1]
    slowest = 1.0 - speed_perturb if perturb else 1.0  # slowed-down audio has more frames
    max_frames = max(frames_for_samples(int(s / slowest)) for s in num_samples)
    sizes = _batch_sizes(boundaries, max_frames, batch_size, max_batch_seconds)
    ds = ds.bucket_by_sequence_length(
        element_length_func=lambda x: x["feature_lengths"], bucket_boundaries=boundaries,
        bucket_batch_sizes=sizes,
        padding_values={"features": 0.0, "feature_lengths": 0, "labels": BLANK_ID, "label_lengths": 0, "text": ""})

    if training and specaugment is not None:
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)

        def augment(batch, s):
            feats, _ = specaugment(batch["features"], batch["feature_lengths"], training=True,
                                   seed=tf.cast(s % (2 ** 31 - 1), tf.int32))
            return dict(batch, features=feats)
        ds = tf.data.Dataset.zip((ds, seeds)).map(augment, num_parallel_calls=num_parallel_calls, deterministic=True)

    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options)
    report.kept, report.num_samples, report.decoder = kept, num_samples, decoder
    ds.data_report = report
    return ds


def _compute_features(paths, featurize, num_parallel_calls) -> list[np.ndarray]:
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths)).map(
        featurize, num_parallel_calls=num_parallel_calls, deterministic=True).prefetch(tf.data.AUTOTUNE)
    cache = [f.numpy() for f in ds]
    logging.info("make_dataset: cached features of %d utterances (%.1f MB)", len(cache),
                 sum(c.nbytes for c in cache) / 1e6)
    return cache


def num_batches(dataset: tf.data.Dataset) -> int:
    """Counts batches by iterating once (for progress bars; the cardinality of a bucketed dataset is unknown)."""
    return int(dataset.reduce(0, lambda c, _: c + 1))


def batch_seconds(feature_lengths) -> float:
    """Seconds of audio that produced frames `feature_lengths` (each row: 25 ms + 10 ms per extra frame)."""
    t = np.asarray(feature_lengths, np.int64)
    return float(np.sum(np.where(t > 0, FRAME_LENGTH + (t - 1) * 160, 0))) / SAMPLE_RATE_HZ
