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


def _compare(*flags):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, "-m", "experiments.compare_corpus_splits", *flags], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)


def test_extra_train_voices_keep_dev_and_test_byte_identical(tmp_path):
    common = ["--hours=0.003", "--seed=0", "--num_workers=1", "--noprogress"]  # test voices: rms, slt
    plain, extra, other = (str(tmp_path / n) for n in ("plain", "extra", "other"))
    assert _run(f"--out_dir={plain}", *common).returncode == 0
    proc = _run(f"--out_dir={extra}", *common, "--extra_train_voices=flite:awb:r120:f100,flite:kal:r95:f85")
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(extra, "summary.json")) as f:
        assert json.load(f)["extra_train_voices"] == ["flite:awb:r120:f100", "flite:kal:r95:f85"]
    out_json = str(tmp_path / "same.json")
    same = _compare(f"--corpus_a={plain}", f"--corpus_b={extra}", f"--output_json={out_json}")
    assert same.returncode == 0, same.stdout + same.stderr
    with open(out_json) as f:
        result = json.load(f)
    assert result["identical"] and [s["split"] for s in result["splits"]] == ["dev", "test"]
    assert all(s["files"] > 1 for s in result["splits"])  # the manifest and its audio
    # A different seed gives a different test split, and the check says so.
    assert _run(f"--out_dir={other}", "--hours=0.003", "--seed=6", "--num_workers=1", "--noprogress").returncode == 0
    differ = _compare(f"--corpus_a={plain}", f"--corpus_b={other}", "--splits=test")
    assert differ.returncode == 1
    assert json.loads(differ.stdout)["splits"][0]["first_difference"] is not None


def test_bad_extra_train_voice_one_line_exit_1(tmp_path):
    proc = _run(f"--out_dir={tmp_path / 'c'}", "--hours=0.003", "--extra_train_voices=flite:awb")
    assert proc.returncode == 1
    assert "error: voice name 'flite:awb': expected" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_compare_corpus_splits_does_not_load_tensorflow():
    # A hashing tool: it should start in a second, not load TensorFlow through a helper import.
    code = "import sys, experiments.compare_corpus_splits; print('tensorflow' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
