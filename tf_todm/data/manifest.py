"""JSONL manifests: one utterance per line.

Line format: `{"audio_filepath": str, "duration": float seconds, "text": str}` plus optional
`"speaker"`, `"voice"` (default corpus: the TTS voice, used as speaker) and `"domain"`.
Relative `audio_filepath`s are resolved against the manifest's folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Iterable

REQUIRED_FIELDS = ("audio_filepath", "duration", "text")


class ManifestError(ValueError):
    """A manifest line that cannot be used; the message names file, line and what was expected."""


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance. `audio_filepath` is absolute; `duration` in seconds. `source` is where it
    was read ("manifest.jsonl:12", set by `read_manifest`; "" otherwise) for error messages; it
    takes no part in equality and is not written back to manifests."""

    audio_filepath: str
    duration: float
    text: str
    speaker: str = ""
    domain: str = ""
    source: str = dataclasses.field(default="", compare=False)

    def to_manifest_dict(self, base_dir: str | None = None) -> dict:
        path = self.audio_filepath
        if base_dir is not None:
            path = os.path.relpath(path, base_dir)
        d = {"audio_filepath": path, "duration": round(float(self.duration), 4), "text": self.text}
        if self.speaker:
            d["speaker"] = self.speaker
        if self.domain:
            d["domain"] = self.domain
        return d


def parse_manifest_line(line: str, where: str, base_dir: str) -> Utterance:
    """Parses one JSONL line; `where` is 'file:line' for error messages and `Utterance.source`."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e.msg}); expected one JSON object per line") from None
    if not isinstance(record, dict):
        raise ManifestError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in record]
    if missing:
        raise ManifestError(f"{where}: missing field(s) {missing}; expected {list(REQUIRED_FIELDS)}")
    path = record["audio_filepath"]
    if not isinstance(path, str) or not path:
        raise ManifestError(f"{where}: field 'audio_filepath' must be a non-empty string, got {path!r}")
    duration = record["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) or duration <= 0:
        raise ManifestError(f"{where}: field 'duration' must be a positive number of seconds, got {duration!r}")
    text = record["text"]
    if not isinstance(text, str):
        raise ManifestError(f"{where}: field 'text' must be a string, got {type(text).__name__}")
    speaker = record.get("speaker", record.get("voice", ""))
    domain = record.get("domain", "")
    for name, value in (("speaker", speaker), ("domain", domain)):
        if not isinstance(value, str):
            raise ManifestError(f"{where}: field {name!r} must be a string, got {value!r}")
    if not os.path.isabs(path):
        path = os.path.normpath(os.path.join(base_dir, path))
    return Utterance(path, float(duration), text, speaker, domain, source=where)


def read_manifest(path: str) -> list[Utterance]:
    """Reads a JSONL manifest; blank lines are ignored. Raises ManifestError (file:line: reason)."""
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: manifest file does not exist")
    base_dir = os.path.dirname(os.path.abspath(path))
    utterances = []
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            if line.strip():
                utterances.append(parse_manifest_line(line, f"{path}:{line_number}", base_dir))
    if not utterances:
        raise ManifestError(f"{path}: manifest has no utterances")
    return utterances


def write_manifest(path: str, utterances: Iterable[Utterance]) -> None:
    """Writes atomically (temp file + rename); paths are stored relative to the manifest's folder."""
    base_dir = os.path.dirname(os.path.abspath(path))
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for u in utterances:
            f.write(json.dumps(u.to_manifest_dict(base_dir), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def spread_subset(items: list, n: int, key=None) -> list:
    """n of `items` in their order (all of them when n is 0 or >= len). Without `key`, every
    len/n-th item. With `key` (e.g. an utterance's (domain, speaker)), stratified: each group gets
    its share of n (largest remainders), taken every k-th inside the group, so the subset keeps the
    groups' mix even when the list alternates between groups (a stride would alias with that)."""
    if not n or n >= len(items):
        return list(items)
    if key is None:
        stride = len(items) / n
        return [items[int(i * stride)] for i in range(n)]
    groups: dict = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item), []).append(index)
    shares = {g: n * len(members) / len(items) for g, members in groups.items()}
    counts = {g: int(share) for g, share in shares.items()}
    for g in sorted(shares, key=lambda g: (counts[g] - shares[g], str(g)))[:n - sum(counts.values())]:
        counts[g] += 1
    chosen = []
    for g, members in groups.items():
        stride = len(members) / counts[g] if counts[g] else 0
        chosen += [members[int(i * stride)] for i in range(counts[g])]
    return [items[i] for i in sorted(chosen)]
