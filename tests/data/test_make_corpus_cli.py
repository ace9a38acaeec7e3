"""Tests for `python -m experiments.make_corpus` as a user runs it (real subprocess)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(*flags, env_path=None):
    env = dict(os.environ, PYTHONPATH=REPO)
    if env_path is not None:
        env["PATH"] = env_path
    return subprocess.run([sys.executable, "-m", "experiments.make_corpus", *flags], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_generates_and_prints_summary(tmp_path):
    out = str(tmp_path / "corpus")
    proc = _run(f"--out_dir={out}", "--hours=0.003", "--seed=5", "--num_workers=1", "--noprogress")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:5] == ["split", "utts", "hours", "voices", "sentences"]
    assert [line.split()[0] for line in lines[1:5]] == ["train", "dev", "test", "total"]
    assert "s of audio per second" in proc.stdout
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    assert int(lines[4].split()[1]) == summary["utterances"]
    for split in ("train", "dev", "test"):
        assert os.path.isfile(os.path.join(out, f"{split}.jsonl"))


@pytest.mark.parametrize("flags, message", [
    (["--hours=0.01"], "error: --out_dir is required"),
    (["--out_dir=X", "--hours=-1"], "error: hours must be a positive number, got -1.0"),
    (["--out_dir=X", "--num_workers=0"], "error: --num_workers must be >= 1, got 0"),
    (["--out_dir=X", "--hours=abc"], "could not convert string to float"),
])
def test_bad_flags_one_line_exit_1(tmp_path, flags, message):
    flags = [f.replace("X", str(tmp_path / "c")) for f in flags]
    proc = _run(*flags)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_tts_engine_one_line_exit_1(tmp_path):
    # A PATH holding only python: espeak-ng and flite are not found.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python")
    proc = _run(f"--out_dir={tmp_path / 'c'}", "--hours=0.01", env_path=str(bin_dir))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: TTS engine 'espeak-ng' not found on PATH")
    assert "Traceback" not in proc.stderr
