"""A learning-rate decay over the end of a wall-clock training budget.

A run limited by time (`TrainConfig.max_train_minutes`) does not know its last step in advance, so a
step-based schedule cannot end at zero. `TimeBudgetDecay` scales any schedule by a factor of the
fraction of the time budget used: 1 until `1 - decay_fraction` of the budget, then linearly down to
0 when the budget runs out (the "cool-down" of warmup-stable-decay schedules; Li, Yumer & Ramanan,
"Budgeted Training", ICLR 2020, proposed linear decay to zero within the budget). The
trainer sets `progress` before each step from the run's accumulated training time, which survives
a resume (`TrainState.train_seconds`).

Runs with it are deterministic up to the decay window; inside it the rate depends on the machine's
speed, as the number of steps in a time budget already does.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def time_budget_lr_factor(progress, decay_fraction: float):
    """Learning-rate factor at `progress` (fraction of the time budget used, any shape, float).

    `1` while `progress <= 1 - decay_fraction`, then `(1 - progress) / decay_fraction`, clipped to
    [0, 1] (so 0 from `progress >= 1`). `decay_fraction` in (0, 1]; returns float32.
    """
    if not 0.0 < decay_fraction <= 1.0:
        raise ValueError(f"time_budget_lr_factor: decay_fraction must be in (0, 1], got {decay_fraction}")
    progress = tf.cast(progress, tf.float32)
    return tf.clip_by_value((1.0 - progress) / decay_fraction, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="tf_todm")
class TimeBudgetDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`lr(step) = schedule(step) * time_budget_lr_factor(progress, decay_fraction)`.

    Args:
      schedule: the learning-rate schedule to scale (e.g. `Eden`).
      decay_fraction: the final fraction of the time budget over which the rate falls to 0.

    Attributes:
      progress: float32 scalar variable, the fraction of the time budget used (0 at creation);
        set it with `set_progress` (the trainer does, before each step). Not part of the config.
    """

    def __init__(self, schedule, decay_fraction: float):
        if not 0.0 < float(decay_fraction) <= 1.0:
            raise ValueError(f"TimeBudgetDecay: decay_fraction must be in (0, 1], got {decay_fraction}")
        self.schedule = schedule
        self.decay_fraction = float(decay_fraction)
        self.progress = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="time_budget_progress")

    def set_progress(self, fraction: float) -> None:
        """Records that `fraction` of the time budget is used (values above 1 are kept: factor 0)."""
        self.progress.assign(max(0.0, float(fraction)))

    def factor(self) -> tf.Tensor:
        """The current factor, float32 scalar."""
        return time_budget_lr_factor(self.progress, self.decay_fraction)

    def __call__(self, step):
        return tf.cast(self.schedule(step), tf.float32) * self.factor()

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "decay_fraction": self.decay_fraction}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["schedule"] = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(**config)
