"""`per_model`: a value built once per model object (e.g. its compiled functions), dropped with it."""

from __future__ import annotations

import functools
import weakref
from typing import Callable, TypeVar

T = TypeVar("T")


def per_model(build: Callable[[object], T]) -> Callable[[object], T]:
    """Decorator: `f(model)` runs `build(model)` on the first call for that model object and
    returns the same value afterwards. Entries are weakly keyed, so they die with the model (a
    `tf.function` built here, which closes over the model, is traced once per model)."""
    entries: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    @functools.wraps(build)
    def cached(model) -> T:
        value = entries.get(model)
        if value is None:
            value = entries[model] = build(model)
        return value

    cached.entries = entries  # for tests
    return cached
