"""Builders of bad (and good) input files for the reliability tests, plus a CLI runner.

Not a conftest: tests import these helpers explicitly. Every builder writes real files (real WAV
bytes via `soundfile`, a real SentencePiece model) so a CLI meets exactly what a user would give it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Optional, Sequence

import numpy as np
import soundfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_RATE_HZ = 16000

# ------------------------------------------------------------------ running a CLI as a user does


class CliResult:
    """returncode, stdout, stderr and wall seconds of one `python -m experiments.<name>` run."""

    def __init__(self, proc: subprocess.CompletedProcess, seconds: float, argv: Sequence[str]):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.seconds = seconds
        self.argv = list(argv)

    def __repr__(self):
        return (f"CliResult(rc={self.returncode}, {self.seconds:.1f}s, argv={self.argv},\n"
                f"stdout={self.stdout[-2000:]!r},\nstderr={self.stderr[-3000:]!r})")

    def error_lines(self) -> list[str]:
        """Lines of stderr+stdout that look like a user-facing error ('error: ...' or an
        absl 'FATAL Flags parsing error')."""
        lines = (self.stderr + "\n" + self.stdout).splitlines()
        return [ln for ln in lines if ln.startswith("error:") or "Flags parsing error" in ln
                or ln.startswith("ERROR:") or ln.startswith("FATAL")]


def cli_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow",
               PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


def run_cli(name: str, *flags: str, timeout: float = 240, env: Optional[dict] = None) -> CliResult:
    """Runs `python -m experiments.<name> flags...` from the repo root."""
    argv = [sys.executable, "-m", f"experiments.{name}", *flags]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=cli_env(env), capture_output=True, text=True,
                          timeout=timeout)
    return CliResult(proc, time.perf_counter() - start, argv[2:])


def cli_exists(name: str) -> bool:
    return os.path.isfile(os.path.join(REPO, "experiments", f"{name}.py"))


def assert_one_line_error(result: CliResult, *needles: str) -> str:
    """The contract for a user mistake: exit code != 0, no traceback, exactly ONE error line, and
    that line contains every one of `needles` (file name, line number, flag, what was expected).

    Returns the error line.
    """
    both = result.stderr + result.stdout
    assert result.returncode != 0, f"exit 0 on bad input: {result!r}"
    assert "Traceback" not in both, f"traceback instead of one line: {result!r}"
    errors = result.error_lines()
    assert len(errors) == 1, f"expected ONE error line, got {len(errors)}: {errors!r}\n{result!r}"
    line = errors[0]
    for needle in needles:
        assert needle in line, f"error line lacks {needle!r}: {line!r}\n{result!r}"
    return line


# ------------------------------------------------------------------ audio


def tone(seconds: float = 0.6, rate: int = SAMPLE_RATE_HZ, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    """A float32 [N] tone with a little noise, amplitude < 0.5."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


def write_wav(path: str, samples: np.ndarray, rate: int = SAMPLE_RATE_HZ) -> str:
    soundfile.write(path, samples, rate, subtype="PCM_16")
    return path


def good_wav(path: str, seconds: float = 0.6, seed: int = 0) -> str:
    return write_wav(path, tone(seconds, seed=seed, freq=220.0 + 40 * seed))


def corrupt_audio(path: str) -> str:
    """Bytes that are no audio format at all (named .wav)."""
    with open(path, "wb") as f:
        f.write(b"this is not a RIFF file, just text pretending to be audio\n" * 20)
    return path


def empty_audio(path: str) -> str:
    """A zero-byte file named .wav."""
    open(path, "wb").close()
    return path


def header_only_wav(path: str) -> str:
    """A valid WAV header with zero samples."""
    return write_wav(path, np.zeros(0, np.float32))


def truncated_wav(path: str, seconds: float = 0.6) -> str:
    """A WAV whose header announces more data than the file holds (cut in the middle)."""
    write_wav(path, tone(seconds))
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(44 + (size - 44) // 3)
    return path


def wrong_rate_wav(path: str, rate: int = 8000) -> str:
    return write_wav(path, tone(0.6, rate=rate), rate=rate)


def stereo_wav(path: str) -> str:
    x = tone(0.6)
    return write_wav(path, np.stack([x, 0.5 * x], axis=1))


AUDIO_DEFECTS = {
    "corrupt": corrupt_audio,
    "empty_file": empty_audio,
    "no_samples": header_only_wav,
    "truncated": truncated_wav,
    "rate_8k": wrong_rate_wav,
    "stereo": stereo_wav,
}
"""name -> builder(path) of one defective audio file."""

# ------------------------------------------------------------------ manifests

TRANSCRIPTS = ["turn on the light", "set a timer for ten minutes", "what time is it",
               "play some music", "call my mother", "open the door please", "stop the alarm",
               "turn off the radio"]


def good_corpus(directory: str, num: int = 6, seconds: float = 0.6) -> list[dict]:
    """Writes `num` good wavs under directory/audio and returns their manifest records."""
    audio = os.path.join(directory, "audio")
    os.makedirs(audio, exist_ok=True)
    records = []
    for i in range(num):
        path = good_wav(os.path.join(audio, f"utt{i}.wav"), seconds, seed=i)
        records.append({"audio_filepath": os.path.relpath(path, directory), "duration": seconds,
                        "text": TRANSCRIPTS[i % len(TRANSCRIPTS)]})
    return records


def write_manifest_lines(path: str, lines: Sequence) -> str:
    """Writes JSONL; each item is a dict (dumped) or a raw str (written verbatim)."""
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


def manifest_with_bad_line(directory: str, kind: str, name: str = "train.jsonl",
                           bad_line_number: int = 3) -> tuple[str, int]:
    """A manifest whose line `bad_line_number` (1-based) has defect `kind`; the others are good.

    Kinds: "not_json", "missing_field", "missing_path", "empty_text", "unknown_chars",
    "bad_duration", any key of AUDIO_DEFECTS. Returns (manifest path, bad line number).
    """
    records = good_corpus(directory, num=6)
    i = bad_line_number - 1
    bad = dict(records[i])
    if kind == "not_json":
        bad = '{"audio_filepath": "audio/utt2.wav", "duration": 0.6, "text": "unterminated'
    elif kind == "missing_field":
        del bad["text"]
    elif kind == "missing_path":
        bad["audio_filepath"] = "audio/does_not_exist.wav"
    elif kind == "empty_text":
        bad["text"] = "   "
    elif kind == "unknown_chars":
        bad["text"] = "turn on the light \u4e2d\u6587 \u00bfqu\u00e9?"
    elif kind == "bad_duration":
        bad["duration"] = -1
    elif kind in AUDIO_DEFECTS:
        path = os.path.join(directory, "audio", f"bad_{kind}.wav")
        AUDIO_DEFECTS[kind](path)
        bad["audio_filepath"] = os.path.relpath(path, directory)
    else:
        raise KeyError(kind)
    records[i] = bad
    return write_manifest_lines(os.path.join(directory, name), records), bad_line_number


def good_manifest(directory: str, name: str = "train.jsonl", num: int = 6) -> str:
    return write_manifest_lines(os.path.join(directory, name), good_corpus(directory, num=num))


# ------------------------------------------------------------------ tokenizer


def tiny_tokenizer(directory: str, vocab_size: int = 32) -> str:
    """A real SentencePiece model over the lower-case transcripts above (letters, apostrophe)."""
    from tf_todm.data.tokenizer import train_tokenizer

    texts = TRANSCRIPTS * 4 + ["the quick brown fox jumps over the lazy dog's back",
                                "pack my box with five dozen liquor jugs"]
    return train_tokenizer(texts, os.path.join(directory, "tok"), vocab_size, model_type="unigram")


# ------------------------------------------------------------------ other files


def not_a_tflite(path: str) -> str:
    with open(path, "wb") as f:
        f.write(b"TFL3 is what a flatbuffer says at offset 4, this file says something else" * 4)
    return path


def write_json(path: str, obj) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    return path


def write_flagfile(path: str, flags: Sequence[str]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(flags) + "\n")
    return path
