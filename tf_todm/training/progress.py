"""Progress reporting: absl log lines (loss, steps/s, audio-s/s, ETA) and TensorBoard scalars."""

from __future__ import annotations

import math
import os
import time
from typing import Mapping, Optional

import tensorflow as tf
from absl import logging


def format_duration(seconds: float) -> str:
    """`3725.0 -> '1h02m05s'`; '?' for unknown/infinite."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def eta_seconds(steps_done: int, total_steps: Optional[int], steps_per_second: float,
                seconds_to_deadline: float = math.inf) -> float:
    """Seconds left: the steps left at the current rate, or the time to a wall-clock deadline
    if that comes first; inf when neither is known."""
    by_steps = math.inf
    if total_steps and steps_per_second > 0:
        by_steps = max(0, total_steps - steps_done) / steps_per_second
    return min(by_steps, max(0.0, seconds_to_deadline))


class ProgressLogger:
    """Logs a line every `log_every_steps` and writes TensorBoard summaries (chief only).

    Rates are measured over the window since the previous log line, so compile time of the
    first step only affects the first line.

    Args:
      log_dir: TensorBoard folder (None = no summaries).
      total_steps: expected optimizer steps for the ETA (None/0 = unknown).
      log_every_steps: period of the log line.
      enabled: False on non-chief workers.
    """

    def __init__(self, log_dir: Optional[str], total_steps: Optional[int], log_every_steps: int,
                 enabled: bool = True):
        self.total_steps = total_steps
        self.log_every_steps = max(1, int(log_every_steps))
        self.enabled = enabled
        self.writer = (tf.summary.create_file_writer(log_dir)
                       if (log_dir and enabled) else None)
        self._t0 = time.perf_counter()
        self._window_start = self._t0
        self._window_steps = 0
        self._window_audio_seconds = 0.0
        self.last_rates = {"steps_per_second": 0.0, "audio_seconds_per_second": 0.0}
        self.deadline = math.inf  # time.perf_counter() value of a wall-clock stop, if any

    def set_deadline(self, perf_counter_deadline: float) -> None:
        """The ETA then also counts down to this `time.perf_counter()` value (max_train_minutes)."""
        self.deadline = perf_counter_deadline

    def update(self, step: int, audio_seconds: float, scalars: Mapping[str, float]) -> None:
        """Call once per processed batch with the global step after it and its audio seconds."""
        self._window_steps += 1
        self._window_audio_seconds += audio_seconds
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in scalars.items():
                    tf.summary.scalar(name, value)
        if step % self.log_every_steps == 0:
            self._log(step, scalars)

    def _log(self, step: int, scalars: Mapping[str, float]) -> None:
        now = time.perf_counter()
        dt = max(now - self._window_start, 1e-9)
        sps = self._window_steps / dt
        aps = self._window_audio_seconds / dt
        self.last_rates = {"steps_per_second": sps, "audio_seconds_per_second": aps}
        self._window_start, self._window_steps, self._window_audio_seconds = now, 0, 0.0
        if self.writer is not None:
            with self.writer.as_default(step=step):
                tf.summary.scalar("perf/steps_per_second", sps)
                tf.summary.scalar("perf/audio_seconds_per_second", aps)
        if not self.enabled:
            return
        values = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
        total = f"/{self.total_steps}" if self.total_steps else ""
        logging.info("step %d%s %s | %.2f steps/s %.1f audio-s/s | elapsed %s ETA %s",
                     step, total, values, sps, aps, format_duration(now - self._t0),
                     format_duration(eta_seconds(step, self.total_steps, sps, self.deadline - now)))

    def scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        """Writes extra scalars (e.g. dev WER) and logs them."""
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for name, value in scalars.items():
                    tf.summary.scalar(name, value)
        if self.enabled:
            logging.info("step %d %s", step,
                         " ".join(f"{k}={v:.4g}" for k, v in scalars.items()))

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()


def tensorboard_dir(out_dir: str) -> str:
    return os.path.join(out_dir, "tb")
