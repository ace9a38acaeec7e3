"""per_model: built once per model object, weakly keyed."""
import gc

from tf_todm.models.per_model import per_model


class Model:
    pass


def test_built_once_per_model_and_dropped_with_it():
    calls = []

    @per_model
    def build(model):
        calls.append(model)
        return object()

    a, b = Model(), Model()
    first = build(a)
    assert build(a) is first and len(calls) == 1
    assert build(b) is not first and len(calls) == 2
    del calls[:]
    del a
    gc.collect()
    assert len(build.entries) == 1  # only b's entry is left
