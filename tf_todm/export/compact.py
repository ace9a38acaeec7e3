"""Writing a parsed `.tflite` model compactly: each distinct quantization table and vector once.

The converter gives every tensor its own `QuantizationParameters` table with its own `scale`
(float32) and `zero_point` (int64) vectors. Per-channel int8 weights and their int32 biases carry
one scale and one zero point per output channel, and the zero points of symmetric weights and
biases are all 0, so in a full-int8 Conformer these vectors are ~12% of the file. A FlatBuffer
refers to tables and vectors by offset, so one object may be referenced from many places:
`write_model` writes each distinct quantization vector (and each distinct table) once and points
every tensor that has it there. Readers see exactly the values they saw before (LiteRT,
TFLite-Micro and the object API read through the offsets), only the file is smaller.

Only quantization parameters are shared. Weight buffers, shapes and everything else are written
as the TFLite object API writes them (`flatbuffer_utils.convert_object_to_bytearray`).
"""

from __future__ import annotations

import numpy as np

TFLITE_FILE_IDENTIFIER = b"TFL3"

_VECTOR_DTYPES = {"min": np.float32, "max": np.float32, "scale": np.float32, "zeroPoint": np.int64}
"""`QuantizationParametersT` vector fields and their schema element types."""


def compact_model(model: bytes, strip_names: bool = False) -> bytes:
    """`model` re-written with shared quantization parameters (`write_model`); with
    `strip_names`, also without tensor and subgraph names (signature keys and their input/output
    names stay: they are the app's interface and map to tensors by index)."""
    from tensorflow.lite.tools import flatbuffer_utils

    parsed = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    if strip_names:
        clear_names(parsed)
    return write_model(parsed)


def clear_names(parsed) -> None:
    """Drops tensor and subgraph names of a parsed model (`ModelT`), in place."""
    for subgraph in parsed.subgraphs or []:
        subgraph.name = None
        for tensor in subgraph.tensors or []:
            tensor.name = None


def write_model(parsed) -> bytes:
    """Serialises a parsed model (`schema_py_generated.ModelT`) with every distinct quantization
    table and scale/zero-point/min/max vector written once. `parsed` is left unchanged."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    shared = _SharedQuantization(builder)
    originals = []
    for subgraph in parsed.subgraphs or []:
        for tensor in subgraph.tensors or []:
            q = tensor.quantization
            if q is not None and q.details is None:  # custom quantization details: left as is
                originals.append((tensor, q))
                tensor.quantization = _Packable(q, shared)
    try:
        root = parsed.Pack(builder)
    finally:
        for tensor, q in originals:
            tensor.quantization = q
    builder.Finish(root, file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


class _Packable:
    """Stands in for a `QuantizationParametersT` while its tensor is packed."""

    def __init__(self, params, shared: "_SharedQuantization"):
        self.params, self.shared = params, shared

    def Pack(self, builder):  # noqa: N802 (the object API's method name)
        return self.shared.table(self.params)


class _SharedQuantization:
    """Per-builder caches: vector bytes -> offset, table contents -> offset."""

    def __init__(self, builder):
        self.builder = builder
        self.vectors: dict = {}
        self.tables: dict = {}

    def vector(self, values, dtype) -> int:
        array = np.ascontiguousarray(np.asarray(values, dtype=dtype).reshape(-1))
        key = (array.dtype.str, array.tobytes())
        if key not in self.vectors:
            self.vectors[key] = self.builder.CreateNumpyVector(array)
        return self.vectors[key]

    def table(self, q) -> int:
        from tensorflow.lite.python import schema_py_generated as schema

        fields = {name: getattr(q, name) for name in _VECTOR_DTYPES}
        key = tuple(
            None if v is None else np.asarray(v, dtype=_VECTOR_DTYPES[name]).tobytes()
            for name, v in fields.items()
        ) + (int(q.detailsType), int(q.quantizedDimension))
        if key in self.tables:
            return self.tables[key]
        offsets = {name: self.vector(v, _VECTOR_DTYPES[name])
                   for name, v in fields.items() if v is not None}
        b = self.builder
        schema.QuantizationParametersStart(b)
        adders = {"min": schema.QuantizationParametersAddMin, "max": schema.QuantizationParametersAddMax,
                  "scale": schema.QuantizationParametersAddScale,
                  "zeroPoint": schema.QuantizationParametersAddZeroPoint}
        for name, offset in offsets.items():
            adders[name](b, offset)
        schema.QuantizationParametersAddDetailsType(b, q.detailsType)
        schema.QuantizationParametersAddQuantizedDimension(b, q.quantizedDimension)
        self.tables[key] = schema.QuantizationParametersEnd(b)
        return self.tables[key]
