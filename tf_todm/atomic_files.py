"""Atomic side files (JSON results, checkpoint indexes): a reader sees the old file or the new one,
never half of one, even if the writer is killed. No TensorFlow import, so data tools can use it."""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
from typing import Any


def write_text_atomic(path: str, text: str, suffix: str = ".tmp") -> None:
    """Writes `text` to `path` via a temp file in the same directory + fsync + `os.replace`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    """Writes `obj` as JSON to `path` atomically (`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", suffix=".json")


def remove_temp_files(directory: str, suffix: str) -> list[str]:
    """Deletes the `.tmp_*<suffix>` files `write_text_atomic` leaves in `directory` when its writer
    is killed between the temp write and the rename; returns the removed names (sorted).

    Call it only where no other writer can be mid-write (e.g. when a run starts or resumes)."""
    if not os.path.isdir(directory):
        return []
    removed = sorted(name for name in os.listdir(directory)
                     if fnmatch.fnmatchcase(name, f".tmp_*{suffix}"))
    for name in removed:
        os.remove(os.path.join(directory, name))
    return removed
