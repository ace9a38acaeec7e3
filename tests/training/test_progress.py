"""Progress helpers: durations, ETA, TensorBoard scalars written."""
import math
import os

import pytest

from tf_todm.training.progress import ProgressLogger, eta_seconds, format_duration


def test_format_duration_and_eta():
    assert format_duration(3725.0) == "1h02m05s"
    assert format_duration(65) == "1m05s" and format_duration(4.4) == "4s"
    assert format_duration(math.inf) == "?"
    assert eta_seconds(10, 110, 4.0) == pytest.approx(25.0)
    assert math.isinf(eta_seconds(10, None, 4.0)) and math.isinf(eta_seconds(10, 100, 0.0))
    # A wall-clock limit (max_train_minutes) caps the ETA when it comes before the last step.
    assert eta_seconds(10, 75_500, 2.0, seconds_to_deadline=600.0) == pytest.approx(600.0)
    assert eta_seconds(10, 110, 4.0, seconds_to_deadline=600.0) == pytest.approx(25.0)
    assert eta_seconds(10, None, 0.0, seconds_to_deadline=90.0) == pytest.approx(90.0)
    assert eta_seconds(10, 110, 4.0, seconds_to_deadline=-5.0) == 0.0


def test_logger_writes_tensorboard_events(tmp_path):
    log = ProgressLogger(str(tmp_path / "tb"), total_steps=4, log_every_steps=2)
    for step in range(1, 5):
        log.update(step, audio_seconds=3.0, scalars={"loss": 1.0 / step})
    log.scalars(4, {"dev_wer/largest": 0.5})
    log.flush()
    assert log.last_rates["steps_per_second"] > 0 and log.last_rates["audio_seconds_per_second"] > 0
    files = os.listdir(tmp_path / "tb")
    assert any(f.startswith("events.out.tfevents") for f in files)
    assert os.path.getsize(tmp_path / "tb" / files[0]) > 100
