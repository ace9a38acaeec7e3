"""Device budgets: the resource limits a searched subnet must meet.

A budgets file is JSON, either an object keyed by budget name

    {"phone": {"max_params": 5000000, "max_latency_ms_per_s_audio": 40},
     "watch": {"max_int8_bytes": 2000000}}

or a list of objects each carrying a "name". Every limit is optional (absent or null = no limit);
an unknown key, a duplicate name or a limit that is not a positive number is an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping, Optional, Union


class BudgetError(ValueError):
    """A budgets file or dict that does not match the expected format."""


@dataclasses.dataclass(frozen=True)
class Budget:
    """Resource limits for one target device.

    Args:
      name: budget name (used in reports and file names).
      max_params: maximum number of float parameters of the extracted subnet.
      max_macs_per_s: maximum multiply-accumulates per second of input audio.
      max_int8_bytes: maximum size in bytes of the full-int8 `.tflite` (estimated or measured).
      max_latency_ms_per_s_audio: maximum compute time in ms per second of audio (ms/s = 1000·RTF).
    """

    name: str
    max_params: Optional[int] = None
    max_macs_per_s: Optional[float] = None
    max_int8_bytes: Optional[int] = None
    max_latency_ms_per_s_audio: Optional[float] = None

    def limits(self) -> dict[str, float]:
        """{cost field name: limit} for the limits that are set (cost field = key minus `max_`)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("max_") and getattr(self, f.name) is not None:
                out[f.name[len("max_"):]] = getattr(self, f.name)
        return out

    def violations(self, costs: Any) -> list[str]:
        """Human-readable list of the limits `costs` (a `Costs`) exceeds; empty when feasible.

        Raises ValueError when the budget limits a cost the cost model did not provide (None).
        """
        out = []
        for field, limit in self.limits().items():
            value = getattr(costs, field)
            if value is None:
                raise BudgetError(
                    f"budget {self.name!r} limits {field} but the cost model gives no {field} "
                    f"(provide a latency estimator or drop max_{field})")
            if value > limit:
                out.append(f"{field}={value:.6g} > {limit:.6g}")
        return out

    def is_feasible(self, costs: Any) -> bool:
        return not self.violations(costs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_LIMIT_KEYS = tuple(f.name for f in dataclasses.fields(Budget) if f.name != "name")
_INT_KEYS = ("max_params", "max_int8_bytes")


def _parse_one(name: Any, entry: Any, where: str) -> Budget:
    if not isinstance(name, str) or not name:
        raise BudgetError(f"{where}: budget name must be a non-empty string, got {name!r}")
    if not isinstance(entry, Mapping):
        raise BudgetError(f"{where}: budget {name!r} must be an object of limits, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(_LIMIT_KEYS) - {"name"})
    if unknown:
        raise BudgetError(
            f"{where}: budget {name!r} has unknown key {unknown[0]!r} (expected one of {list(_LIMIT_KEYS)})")
    values = {}
    for key in _LIMIT_KEYS:
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BudgetError(f"{where}: budget {name!r} key {key!r} must be a positive number, got {value!r}")
        if value <= 0:
            raise BudgetError(f"{where}: budget {name!r} key {key!r} must be > 0, got {value!r}")
        if key in _INT_KEYS:
            if float(value) != int(value):
                raise BudgetError(f"{where}: budget {name!r} key {key!r} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        values[key] = value
    return Budget(name=name, **values)


def load_budgets(path_or_dict: Union[str, os.PathLike, Mapping, list]) -> list[Budget]:
    """Parses budgets from a JSON file path, a dict keyed by name, or a list of named dicts.

    Raises:
      BudgetError (a ValueError): unreadable file, bad JSON, unknown key, duplicate name,
        non-positive or non-numeric limit, or no budgets at all. The message names the file and
        the budget.
    """
    if isinstance(path_or_dict, (str, os.PathLike)):
        where = os.fspath(path_or_dict)
        try:
            with open(where, "r", encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise BudgetError(f"{where}: cannot read budgets file ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise BudgetError(f"{where}:{e.lineno}: invalid JSON ({e.msg})") from None
    else:
        where, data = "<budgets>", path_or_dict

    if isinstance(data, Mapping):
        items = []
        for name, entry in data.items():
            if isinstance(entry, Mapping) and "name" in entry and entry["name"] != name:
                raise BudgetError(f"{where}: budget {name!r} has a different inner name {entry['name']!r}")
            items.append((name, entry))
    elif isinstance(data, list):
        items = []
        for i, entry in enumerate(data):
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise BudgetError(f"{where}: budget #{i} must be an object with a \"name\"")
            items.append((entry["name"], entry))
    else:
        raise BudgetError(f"{where}: expected an object keyed by budget name or a list, got {type(data).__name__}")

    budgets, seen = [], set()
    for name, entry in items:
        budget = _parse_one(name, entry, where)
        if budget.name in seen:
            raise BudgetError(f"{where}: duplicate budget name {budget.name!r}")
        seen.add(budget.name)
        budgets.append(budget)
    if not budgets:
        raise BudgetError(f"{where}: no budgets defined")
    return budgets
