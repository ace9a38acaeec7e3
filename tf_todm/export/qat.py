"""Quantization-aware fine-tuning of a plain (extracted) `Transducer` with TF core fake-quant ops.

tfmot's Keras wrappers reject Keras 3 models (`convert.TFMOT_KERAS3_ERROR`), so this module does
QAT without model surgery:

* Weights (per-channel int8, symmetric, narrow range [-127, 127] as the TFLite converter stores
  them): each step the float weights are saved, the kernels are overwritten with their
  fake-quantized values (`tf.quantization.fake_quant_with_min_max_vars_per_channel`, range
  +-max|w| per output channel), the loss and its gradients are computed AT the quantized weights,
  the float weights are restored and the optimizer updates them with those gradients. Because the
  range covers every weight nothing is clipped, so this is exactly the straight-through estimator
  of fake-quant training ("shadow" float weights).
* Activations (int8, asymmetric): while fine-tuning, the outputs of every Dense layer and LayerNorm
  of the encoder, predictor and joiner (the tensors the int8 model stores between kernels) go
  through `tf.quantization.fake_quant_with_min_max_vars` with ranges tracked by an exponential
  moving average of the batch min/max (always including 0). The hooks are instance-level `call`
  overrides removed afterwards (`activation_fake_quant` context manager), so nothing persists.

`qat_finetune(model, batches, steps)` updates `model` in place and returns a history; the float
weights it leaves behind go to the normal `full_int8` converter (the calibrator measures its own
activation ranges; the learned EMA ranges are only used during training).

Loss: the exact RNN-T loss of `tf_todm.losses.rnnt` on the full joiner lattice (what the trainer
uses with `loss="exact"`), mean over the batch. Batches are dicts with `features` [B, T, F] f32,
`feature_lengths` [B], `labels` [B, U] (0-padded) and `label_lengths` [B] (CONTRACTS.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from typing import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.models.layer_norm import LayerNorm


class QatError(ValueError):
    """Bad QAT request (non-positive steps, empty batches, non-finite loss)."""


@dataclasses.dataclass(frozen=True)
class QuantizedKernel:
    """A weight variable fake-quantized during QAT. `channel_axis` None = per-tensor."""

    variable: tf.Variable
    channel_axis: int | None


def _unique_layers(root) -> list:
    seen, out = set(), []
    for layer in root._flatten_layers(include_self=True, recursive=True):
        if id(layer) not in seen:
            seen.add(id(layer))
            out.append(layer)
    return out


def _deployed_parts(model) -> list:
    """The sub-layers that end up in the streaming export (no simple/CTC heads)."""
    return [model.encoder, model.predictor, model.joiner]


def quantized_kernels(model) -> list[QuantizedKernel]:
    """The weights the int8 converter quantizes per channel: Dense / Conv / LSTM kernels (output
    channel last), depthwise kernels (channels on axis -2, multiplier last) and embeddings
    (per-tensor). Biases (int32 in TFLite) and LayerNorm scales are left float."""
    kernels = []
    for part in _deployed_parts(model):
        for layer in _unique_layers(part):
            if isinstance(layer, keras.layers.DepthwiseConv1D) or isinstance(layer, keras.layers.DepthwiseConv2D):
                kernels.append(QuantizedKernel(layer.kernel, -2))
            elif isinstance(layer, (keras.layers.Dense, keras.layers.Conv1D, keras.layers.Conv2D)):
                kernels.append(QuantizedKernel(layer.kernel, -1))
            elif isinstance(layer, keras.layers.LSTM):
                kernels.append(QuantizedKernel(layer.cell.kernel, -1))
                kernels.append(QuantizedKernel(layer.cell.recurrent_kernel, -1))
            elif isinstance(layer, keras.layers.Embedding):
                kernels.append(QuantizedKernel(layer.embeddings, None))
    return kernels


def fake_quant_weight(w: tf.Tensor, channel_axis: int | None, num_bits: int = 8) -> tf.Tensor:
    """Symmetric narrow-range fake quantization of `w`: per channel along `channel_axis` (range
    +-max|w| of that channel) or per tensor. Equals round(w / s) * s with s = max|w| / (2^(b-1)-1)."""
    w = tf.convert_to_tensor(w, tf.float32)
    if channel_axis is None:
        m = tf.maximum(tf.reduce_max(tf.abs(w)), 1e-8)
        return tf.quantization.fake_quant_with_min_max_vars(w, -m, m, num_bits=num_bits, narrow_range=True)
    axis = channel_axis % len(w.shape)
    perm = [i for i in range(len(w.shape)) if i != axis] + [axis]
    moved = tf.transpose(w, perm)
    m = tf.maximum(tf.reduce_max(tf.abs(tf.reshape(moved, [-1, moved.shape[-1]])), axis=0), 1e-8)
    q = tf.quantization.fake_quant_with_min_max_vars_per_channel(moved, -m, m, num_bits=num_bits,
                                                                  narrow_range=True)
    return tf.transpose(q, np.argsort(perm))


class _RangeTracker:
    """EMA min/max of one activation (starts at the first batch's range; always contains 0)."""

    def __init__(self, decay: float):
        self.decay = float(decay)
        self.min = tf.Variable(0.0, trainable=False)
        self.max = tf.Variable(0.0, trainable=False)
        self.seen = tf.Variable(False, trainable=False)

    def __call__(self, y, num_bits: int):
        y = tf.convert_to_tensor(y)
        lo = tf.minimum(tf.reduce_min(y), 0.0)
        hi = tf.maximum(tf.reduce_max(y), 0.0)
        d = self.decay
        self.min.assign(tf.where(self.seen, d * self.min + (1 - d) * lo, lo))
        self.max.assign(tf.where(self.seen, d * self.max + (1 - d) * hi, hi))
        self.seen.assign(True)
        return tf.quantization.fake_quant_with_min_max_vars(
            y, self.min, tf.maximum(self.max, self.min + 1e-6), num_bits=num_bits)


@contextlib.contextmanager
def activation_fake_quant(model, num_bits: int = 8, ema_decay: float = 0.9):
    """Within the context, every Dense and LayerNorm output of the deployed parts is
    fake-quantized (EMA ranges). Yields {layer path: _RangeTracker}."""
    trackers, patched = {}, []
    for part in _deployed_parts(model):
        for layer in _unique_layers(part):
            if not isinstance(layer, (keras.layers.Dense, LayerNorm)):
                continue
            tracker = _RangeTracker(ema_decay)
            original = layer.call

            def call(*args, _orig=original, _tracker=tracker, **kwargs):
                return _tracker(_orig(*args, **kwargs), num_bits)

            object.__setattr__(layer, "call", call)
            trackers[layer.path] = tracker
            patched.append(layer)
    try:
        yield trackers
    finally:
        for layer in patched:
            object.__delattr__(layer, "call")


def transducer_loss(model, batch: dict, training: bool = False) -> tf.Tensor:
    """Mean exact RNN-T loss of `model` on `batch` (scalar)."""
    from tf_todm.losses.rnnt import rnnt_loss

    enc, enc_lengths = model.encode(batch["features"], batch["feature_lengths"], training=training)
    labels = tf.cast(batch["labels"], tf.int32)
    pred = model.predict(labels, training=training)
    logits = model.joiner(enc, pred)
    return tf.reduce_mean(rnnt_loss(logits, labels, enc_lengths, tf.cast(batch["label_lengths"], tf.int32),
                                    blank=BLANK_ID))


def make_batch(features, feature_lengths, labels) -> dict:
    """Batch dict from arrays (label_lengths = count of non-blank labels per row)."""
    labels = np.asarray(labels, np.int32)
    return {"features": np.asarray(features, np.float32), "feature_lengths": np.asarray(feature_lengths, np.int32),
            "labels": labels, "label_lengths": (labels != BLANK_ID).sum(1).astype(np.int32)}


def qat_finetune(model, batches: Iterable[dict] | Callable[[], Iterable[dict]], steps: int,
                 learning_rate: float = 1e-4, weight_bits: int = 8, activation_bits: int | None = 8,
                 ema_decay: float = 0.9, loss_fn=transducer_loss, optimizer=None) -> dict:
    """Fine-tunes `model` (in place) for `steps` steps with fake-quantized weights/activations.

    Args:
      model: a plain `Transducer` (e.g. from `extract.extract_subnet`).
      batches: batch dicts (cycled if shorter than `steps`), or a zero-argument callable
        returning such an iterable.
      steps: optimizer steps (> 0).
      learning_rate: Adam learning rate (ignored with `optimizer`).
      weight_bits / activation_bits: fake-quant widths; None switches that part off (both None:
        plain float fine-tuning through the same code, the control arm of a QAT comparison).
      loss_fn: (model, batch) -> scalar loss.

    Returns:
      {"steps", "losses" (per step, at quantized weights), "seconds", "num_quantized_kernels",
       "num_activation_points", "activation_ranges" {layer path: [min, max]}}.
    Raises:
      QatError: steps <= 0, no batches, or a non-finite loss.
    """
    if steps <= 0:
        raise QatError(f"qat_finetune: steps must be > 0, got {steps}")
    source = batches() if callable(batches) else batches
    data = list(itertools.islice(source, steps))
    if not data:
        raise QatError("qat_finetune: batches is empty")
    kernels = quantized_kernels(model) if weight_bits else []
    variables = [v for part in _deployed_parts(model) for v in part.trainable_variables]
    optimizer = optimizer or keras.optimizers.Adam(learning_rate)
    optimizer.build(variables)

    stack = contextlib.ExitStack()
    trackers = stack.enter_context(activation_fake_quant(model, activation_bits, ema_decay)) \
        if activation_bits else {}
    with stack:

        @tf.function(reduce_retracing=True)
        def train_step(batch):
            float_values = [tf.identity(k.variable.value) for k in kernels]
            for k in kernels:
                k.variable.assign(fake_quant_weight(k.variable.value, k.channel_axis, weight_bits))
            with tf.GradientTape() as tape:
                loss = loss_fn(model, batch)
            grads = tape.gradient(loss, variables)
            for k, value in zip(kernels, float_values):
                k.variable.assign(value)
            pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
            optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
            return loss

        losses = []
        start = time.perf_counter()
        for step in range(steps):
            batch = {k: tf.convert_to_tensor(v) for k, v in data[step % len(data)].items()}
            loss = float(train_step(batch))
            if not np.isfinite(loss):
                raise QatError(f"qat_finetune: non-finite loss {loss} at step {step}")
            losses.append(loss)
        seconds = time.perf_counter() - start
        ranges = {p: [float(t.min.numpy()), float(t.max.numpy())] for p, t in trackers.items()}
    return {"steps": steps, "losses": losses, "seconds": seconds, "num_quantized_kernels": len(kernels),
            "num_activation_points": len(trackers), "activation_ranges": ranges}
