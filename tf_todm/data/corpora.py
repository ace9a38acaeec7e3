"""Readers for real corpora in their published layouts, returning `Utterance` lists.

- LibriSpeech: `SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac` with `SPEAKER-CHAPTER.trans.txt`
  (lines `SPEAKER-CHAPTER-NNNN TEXT`). Speaker = SPEAKER.
- TED-LIUM: `sph/TALK.sph` with `stm/TALK.stm` (lines `TALK CHANNEL SPEAKER START END <LABEL> TEXT`);
  segments labelled `ignore_time_segment_in_scoring` are skipped; each segment is cut out of the
  talk by time and cached as a 16 kHz WAV under `cache_dir`.
- JSONL: `tf_todm.data.manifest.read_manifest` / `write_manifest`.

Transcripts go through `normalize_text`. Errors are `CorpusError` naming file:line.
"""

from __future__ import annotations

import os
import re

import soundfile

from tf_todm.constants import SAMPLE_RATE_HZ
from tf_todm.data import audio as audio_lib
from tf_todm.data.manifest import Utterance, read_manifest, write_manifest  # noqa: F401 (re-exported)
from tf_todm.data.text import normalize_text

IGNORE_LABEL = "ignore_time_segment_in_scoring"
_TEDLIUM_NOISE_RE = re.compile(r"\{[^}]*\}|\[[^\]]*\]|<unk>|\([0-9]+\)")


class CorpusError(ValueError):
    """A corpus file that does not follow the expected layout; names file:line."""


# ----------------------------------------------------------------------------- LibriSpeech

def load_librispeech(root: str) -> list[Utterance]:
    """Reads every `*.trans.txt` under `root` (a LibriSpeech subset such as `dev-clean`).

    Returns utterances sorted by id, with absolute FLAC paths, header durations, normalised text
    and speaker = the SPEAKER folder name.
    """
    if not os.path.isdir(root):
        raise CorpusError(f"{root}: LibriSpeech folder does not exist")
    trans_files = []
    for dirpath, _, filenames in os.walk(root):
        trans_files += [os.path.join(dirpath, f) for f in filenames if f.endswith(".trans.txt")]
    if not trans_files:
        raise CorpusError(f"{root}: no SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt files found (LibriSpeech layout)")
    utterances = []
    for trans in sorted(trans_files):
        chapter_dir = os.path.dirname(trans)
        prefix = os.path.basename(trans)[: -len(".trans.txt")]
        with open(trans, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                where = f"{trans}:{line_number}"
                if not line.strip():
                    continue
                parts = line.strip().split(maxsplit=1)
                utt_id = parts[0]
                if not re.fullmatch(r"\d+-\d+-\d+", utt_id) or not utt_id.startswith(prefix + "-"):
                    raise CorpusError(f"{where}: utterance id {utt_id!r} is not {prefix}-NNNN (SPEAKER-CHAPTER-UTTERANCE)")
                if len(parts) < 2 or not normalize_text(parts[1]):
                    raise CorpusError(f"{where}: utterance {utt_id} has no transcript")
                flac = os.path.join(chapter_dir, utt_id + ".flac")
                if not os.path.isfile(flac):
                    raise CorpusError(f"{where}: audio file {flac} does not exist")
                try:
                    info = soundfile.info(flac)
                except (soundfile.LibsndfileError, RuntimeError) as e:
                    raise CorpusError(f"{where}: audio file {flac} is not readable FLAC ({e})") from None
                if info.samplerate != SAMPLE_RATE_HZ:
                    raise CorpusError(f"{where}: audio file {flac} has {info.samplerate} Hz; expected {SAMPLE_RATE_HZ} Hz")
                if info.frames == 0:
                    raise CorpusError(f"{where}: audio file {flac} has 0 samples")
                utterances.append(Utterance(os.path.abspath(flac), info.frames / info.samplerate,
                                            normalize_text(parts[1]), utt_id.split("-")[0], ""))
    return sorted(utterances, key=lambda u: os.path.basename(u.audio_filepath))


# ----------------------------------------------------------------------------- TED-LIUM

def normalize_tedlium_text(text: str) -> str:
    """TED-LIUM transcript -> normalised text: drops `<unk>`, `{NOISE}`-style tags and "(2)"
    pronunciation markers, re-attaches split contractions ("it 's" -> "it's")."""
    text = _TEDLIUM_NOISE_RE.sub(" ", text)
    text = re.sub(r"\s+'", "'", text)
    return normalize_text(text)


def parse_stm_line(line: str, where: str) -> tuple[str, str, str, float, float, str, str] | None:
    """Parses one STM line. Returns (talk, channel, speaker, start_s, end_s, label, text) or None
    for comments (';;') and blank lines. Raises CorpusError naming `where` (file:line)."""
    if not line.strip() or line.startswith(";;"):
        return None
    fields = line.split(maxsplit=6)
    if len(fields) < 5:
        raise CorpusError(f"{where}: expected 'FILE CHANNEL SPEAKER START END [<LABEL>] TEXT', got {line.strip()!r}")
    talk, channel, speaker, start, end = fields[:5]
    try:
        start_s, end_s = float(start), float(end)
    except ValueError:
        raise CorpusError(f"{where}: START/END must be seconds, got {start!r} {end!r}") from None
    if not 0 <= start_s < end_s:
        raise CorpusError(f"{where}: segment times must satisfy 0 <= START < END, got {start_s} {end_s}")
    rest = fields[5:]
    label, text = "", ""
    if rest and rest[0].startswith("<"):
        label = rest[0]
        text = rest[1] if len(rest) > 1 else ""
    else:
        text = " ".join(rest)
    return talk, channel, speaker, start_s, end_s, label, text.strip()


def load_tedlium(root: str, cache_dir: str | None = None) -> list[Utterance]:
    """Reads `root/stm/*.stm` and cuts the matching `root/sph/*.sph` talks into segment WAVs.

    Args:
      root: a TED-LIUM split folder holding `sph/` and `stm/`.
      cache_dir: where segment WAVs go (default `root/segments`); existing segments with the right
        length are reused.

    Returns:
      One utterance per scored segment (speaker = STM speaker), in STM order.
    """
    stm_dir, sph_dir = os.path.join(root, "stm"), os.path.join(root, "sph")
    for d in (stm_dir, sph_dir):
        if not os.path.isdir(d):
            raise CorpusError(f"{d}: folder does not exist; expected TED-LIUM layout root/sph/*.sph + root/stm/*.stm")
    stm_files = sorted(f for f in os.listdir(stm_dir) if f.endswith(".stm"))
    if not stm_files:
        raise CorpusError(f"{stm_dir}: no .stm files")
    cache_dir = cache_dir or os.path.join(root, "segments")
    os.makedirs(cache_dir, exist_ok=True)
    utterances = []
    for stm_name in stm_files:
        stm_path = os.path.join(stm_dir, stm_name)
        segments = []
        with open(stm_path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                parsed = parse_stm_line(line, f"{stm_path}:{line_number}")
                if parsed is None:
                    continue
                talk, _, speaker, start_s, end_s, _, text = parsed
                if text == IGNORE_LABEL or IGNORE_LABEL in text.split():
                    continue
                text = normalize_tedlium_text(text)
                if text:
                    segments.append((line_number, talk, speaker, start_s, end_s, text))
        if not segments:
            continue
        talk = segments[0][1]
        sph = os.path.join(sph_dir, talk + ".sph")
        samples = None  # decoded lazily: fully cached talks are never read
        for line_number, seg_talk, speaker, start_s, end_s, text in segments:
            where = f"{stm_path}:{line_number}"
            if seg_talk != talk:
                raise CorpusError(f"{where}: talk {seg_talk!r} differs from {talk!r}; expected one talk per .stm file")
            first, last = int(round(start_s * SAMPLE_RATE_HZ)), int(round(end_s * SAMPLE_RATE_HZ))
            out = os.path.join(cache_dir, f"{talk}-{int(round(start_s * 100)):07d}-{int(round(end_s * 100)):07d}.wav")
            cached = os.path.isfile(out) and _num_frames(out) == last - first
            if not cached:
                if samples is None:
                    if not os.path.isfile(sph):
                        raise CorpusError(f"{where}: talk audio {sph} does not exist")
                    try:
                        samples = audio_lib.load_audio(sph, SAMPLE_RATE_HZ, mix_to_mono=True)
                    except audio_lib.AudioError as e:
                        raise CorpusError(f"{where}: {e}") from None
                if last > len(samples):
                    raise CorpusError(f"{where}: segment ends at {end_s:.2f} s but {sph} lasts "
                                      f"{len(samples) / SAMPLE_RATE_HZ:.2f} s")
                audio_lib.write_wav(out, samples[first:last], SAMPLE_RATE_HZ)
            utterances.append(Utterance(os.path.abspath(out), (last - first) / SAMPLE_RATE_HZ, text, speaker, ""))
    if not utterances:
        raise CorpusError(f"{stm_dir}: no scored segments with text")
    return utterances


def _num_frames(path: str) -> int:
    try:
        return soundfile.info(path).frames
    except (soundfile.LibsndfileError, RuntimeError):
        return -1
