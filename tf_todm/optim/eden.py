"""Eden learning-rate schedule (icefall), as a Keras `LearningRateSchedule`."""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="tf_todm")
class Eden(keras.optimizers.schedules.LearningRateSchedule):
    """Eden: `lr = base_lr * ((b^2 + B^2) / B^2)^-0.25 * ((e^2 + E^2) / E^2)^-0.25 * warmup`.

    b is the step passed in (Keras passes `optimizer.iterations`, 0-based), B = `lr_batches`,
    e the epoch, E = `lr_epochs`. `warmup = warmup_start + (1 - warmup_start) * b / warmup_batches`
    while `b < warmup_batches`, then 1.

    The epoch is `e = floor(b / steps_per_epoch)` (0 during the first epoch, like icefall's
    `scheduler.step_epoch(epoch - 1)`), or `b / steps_per_epoch` with `fractional_epoch=True`.
    With `steps_per_epoch=None` the epoch factor is 1 (e = 0 throughout).

    Args:
      base_lr: peak learning rate (0.045 with ScaledAdam, as in zipformer).
      lr_batches: B, batches after which the rate decays noticeably. Default 5000.
      lr_epochs: E, epochs after which the rate decays noticeably. Default 6.
      warmup_batches: length of the linear warm-up, in batches. Default 500.
      warmup_start: warm-up factor at step 0, in [0, 1]. Default 0.5.
      steps_per_epoch: optimizer steps per epoch, or None.
      fractional_epoch: use a fractional epoch. Default False.
    """

    def __init__(
        self,
        base_lr: float,
        lr_batches: float = 5000,
        lr_epochs: float = 6,
        warmup_batches: float = 500,
        warmup_start: float = 0.5,
        steps_per_epoch: Optional[int] = None,
        fractional_epoch: bool = False,
    ):
        if not 0.0 <= warmup_start <= 1.0:
            raise ValueError(f"Eden: warmup_start={warmup_start}; expected in [0, 1]")
        if lr_batches <= 0 or lr_epochs <= 0:
            raise ValueError(f"Eden: lr_batches={lr_batches}, lr_epochs={lr_epochs}; expected > 0")
        if warmup_batches < 0:
            raise ValueError(f"Eden: warmup_batches={warmup_batches}; expected >= 0")
        if steps_per_epoch is not None and int(steps_per_epoch) < 1:
            raise ValueError(f"Eden: steps_per_epoch={steps_per_epoch}; expected >= 1 or None")
        self.base_lr = float(base_lr)
        self.lr_batches = float(lr_batches)
        self.lr_epochs = float(lr_epochs)
        self.warmup_batches = float(warmup_batches)
        self.warmup_start = float(warmup_start)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self.fractional_epoch = bool(fractional_epoch)

    def epoch(self, step) -> tf.Tensor:
        """float64 epoch e used for `step`."""
        b = tf.cast(step, tf.float64)
        if self.steps_per_epoch is None:
            return tf.zeros_like(b)
        e = b / self.steps_per_epoch
        return e if self.fractional_epoch else tf.floor(e)

    def __call__(self, step):
        b = tf.cast(step, tf.float64)
        e = self.epoch(step)
        big_b, big_e = self.lr_batches, self.lr_epochs
        factor = ((b * b + big_b * big_b) / (big_b * big_b)) ** -0.25
        factor *= ((e * e + big_e * big_e) / (big_e * big_e)) ** -0.25
        if self.warmup_batches > 0:
            ramp = self.warmup_start + (1.0 - self.warmup_start) * b / self.warmup_batches
            warmup = tf.where(b >= self.warmup_batches, tf.constant(1.0, tf.float64), ramp)
        else:
            warmup = tf.constant(1.0, tf.float64)
        return tf.cast(self.base_lr * factor * warmup, tf.float32)

    def get_config(self):
        return {
            "base_lr": self.base_lr,
            "lr_batches": self.lr_batches,
            "lr_epochs": self.lr_epochs,
            "warmup_batches": self.warmup_batches,
            "warmup_start": self.warmup_start,
            "steps_per_epoch": self.steps_per_epoch,
            "fractional_epoch": self.fractional_epoch,
        }
