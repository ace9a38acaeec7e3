"""CLI user errors: one line on stderr, exit status 1, no traceback."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("args, message", [
    (["--train=kd_wieght=1"], "unknown key 'kd_wieght'"),
    (["--model=model_dim=abc"], "model_dim"),
    (["--train=loss=fast"], "TrainConfig.loss='fast'"),
])
def test_bad_config_is_one_line_exit_1(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "experiments.train_supernet",
                           f"--out_dir={tmp_path}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr[-2000:]
