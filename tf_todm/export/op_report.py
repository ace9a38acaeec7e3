"""What is inside a `.tflite` flatbuffer: ops, tensor dtypes, signatures, quantization.

Parses the flatbuffer with the TFLite schema bindings shipped in `tflite_micro` (no interpreter,
so even a model whose ops cannot be prepared can be inspected). `check_builtin_only` and
`check_tflm_compatible` raise `ModelCheckError` listing every offending op.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from tflite_micro.python.tflite_micro import runtime as _tflm_runtime

_fb = _tflm_runtime.schema_fb
_BUILTIN_NAMES = {v: k for k, v in vars(_fb.BuiltinOperator).items() if not k.startswith("_")}
_TYPE_NAMES = {v: k.lower() for k, v in vars(_fb.TensorType).items() if not k.startswith("_")}

TFLM_OPS = frozenset("""
ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE
DEPTHWISE_CONV_2D DEQUANTIZE DIV ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV
FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION
L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX
MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU QUANTIZE
READ_VARIABLE REDUCE_MAX RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR REVERSE_V2
ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT
SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV
UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
""".split())
"""Builtin ops registrable in TFLite-Micro's MicroMutableOpResolver (REFERENCES.md D6; GELU, ERF,
POW and any fused LayerNorm are absent)."""


class ModelCheckError(ValueError):
    """The model is not a flatbuffer, or uses ops the target runtime cannot run."""


@dataclasses.dataclass(frozen=True)
class OpReport:
    """Summary of one `.tflite` model.

    ops: sorted op names over all subgraphs (custom ops as `CUSTOM:<code>`).
    op_input_dtypes: op name -> sorted set of "dtype,dtype,..." input-dtype tuples seen.
    tensor_dtypes: sorted dtypes of all tensors.
    signatures: name -> {"inputs": [...], "outputs": [...]} (input/output names in tensor order).
    io: name -> {input/output name: {"shape": [...], "dtype": str}}.
    custom_ops: custom op codes (Flex ops start with "Flex").
    num_per_channel_tensors / num_per_tensor_quantized: weight quantization granularity counts.
    dynamic_tensors: names of tensors with an unknown (-1) dimension.
    """

    ops: tuple[str, ...]
    op_input_dtypes: dict
    tensor_dtypes: tuple[str, ...]
    signatures: dict
    io: dict
    custom_ops: tuple[str, ...]
    num_per_channel_tensors: int
    num_per_tensor_quantized: int
    dynamic_tensors: tuple[str, ...]
    size_bytes: int

    def golden(self) -> dict:
        """The converter-regression view: op set, dtypes, signatures (not bytes)."""
        return {
            "ops": list(self.ops),
            "tensor_dtypes": list(self.tensor_dtypes),
            "signatures": {k: {"inputs": sorted(v["inputs"]), "outputs": sorted(v["outputs"])}
                           for k, v in sorted(self.signatures.items())},
            "io": json.loads(json.dumps(self.io, sort_keys=True)),
        }


def _as_str(x) -> str:
    if x is None:
        return ""
    return x.decode() if isinstance(x, (bytes, bytearray)) else str(x)


def parse_model(model_bytes: bytes):
    """Returns the schema object (`ModelT`); raises ModelCheckError if this is not a TFLite model."""
    if not isinstance(model_bytes, (bytes, bytearray)):
        raise ModelCheckError(f"expected the bytes of a .tflite model, got {type(model_bytes).__name__}")
    if len(model_bytes) < 8 or bytes(model_bytes[4:8]) != b"TFL3":
        raise ModelCheckError(
            f"not a TFLite flatbuffer (file identifier {bytes(model_bytes[4:8])!r}, expected b'TFL3', "
            f"{len(model_bytes)} bytes)"
        )
    try:
        return _tflm_runtime.convert_bytearray_to_object(bytearray(model_bytes))
    except Exception as e:  # corrupt flatbuffer
        raise ModelCheckError(f"corrupt TFLite flatbuffer: {e}") from e


def op_report(model_bytes: bytes) -> OpReport:
    """Parses the flatbuffer into an `OpReport`."""
    model = parse_model(model_bytes)
    ops, customs, dtypes, dynamic = set(), set(), set(), set()
    op_in = {}
    per_channel = per_tensor = 0
    for sg in model.subgraphs or []:
        tensors = sg.tensors or []
        for t in tensors:
            dtypes.add(_TYPE_NAMES.get(t.type, str(t.type)))
            sig = t.shapeSignature
            if sig is not None and any(int(d) < 0 for d in sig):
                dynamic.add(_as_str(t.name))
            q = t.quantization
            if q is not None and q.scale is not None and len(q.scale) > 0:
                if len(q.scale) > 1:
                    per_channel += 1
                else:
                    per_tensor += 1
        for op in sg.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = _tflm_runtime.get_builtin_code_from_operator_code(code)
            name = _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")
            if name == "CUSTOM":
                name = "CUSTOM:" + _as_str(code.customCode)
                customs.add(_as_str(code.customCode))
            ops.add(name)
            in_types = ",".join(
                _TYPE_NAMES.get(tensors[i].type, "?") for i in (op.inputs if op.inputs is not None else []) if i >= 0
            )
            op_in.setdefault(name, set()).add(in_types)
    signatures, io = {}, {}
    for sd in model.signatureDefs or []:
        key = _as_str(sd.signatureKey)
        tensors = model.subgraphs[sd.subgraphIndex].tensors
        entry = {"inputs": [_as_str(t.name) for t in sd.inputs or []],
                 "outputs": [_as_str(t.name) for t in sd.outputs or []]}
        signatures[key] = entry
        io[key] = {}
        for kind in ("inputs", "outputs"):
            for tm in getattr(sd, kind) or []:
                t = tensors[tm.tensorIndex]
                io[key][f"{kind[:-1]}:{_as_str(tm.name)}"] = {
                    "shape": [int(d) for d in (t.shape if t.shape is not None else [])],
                    "dtype": _TYPE_NAMES.get(t.type, str(t.type)),
                }
    return OpReport(
        ops=tuple(sorted(ops)),
        op_input_dtypes={k: sorted(v) for k, v in sorted(op_in.items())},
        tensor_dtypes=tuple(sorted(dtypes)),
        signatures=signatures,
        io=io,
        custom_ops=tuple(sorted(customs)),
        num_per_channel_tensors=per_channel,
        num_per_tensor_quantized=per_tensor,
        dynamic_tensors=tuple(sorted(dynamic)),
        size_bytes=len(model_bytes),
    )


def check_builtin_only(model_bytes: bytes) -> OpReport:
    """Raises ModelCheckError if the model has custom or Flex ops; returns the report otherwise."""
    report = op_report(model_bytes)
    if report.custom_ops:
        flex = [c for c in report.custom_ops if c.startswith("Flex")]
        raise ModelCheckError(
            f"model is not builtin-only: custom ops {list(report.custom_ops)}"
            + (f" (Flex ops {flex} need the Flex delegate, absent from TF >= 2.20 wheels)" if flex else "")
        )
    return report


def check_tflm_compatible(model_bytes: bytes, registered_ops=TFLM_OPS) -> OpReport:
    """Raises ModelCheckError unless the model can run in TFLite-Micro.

    Checks: builtin-only; every op in `registered_ops`; no dynamic tensor dimensions; EXP only on
    float32; BATCH_MATMUL inputs of one dtype (no hybrid float x int8); a single subgraph entry.
    """
    report = check_builtin_only(model_bytes)
    problems = []
    missing = [op for op in report.ops if op not in registered_ops]
    if missing:
        problems.append(f"ops not registered in TFLite-Micro: {missing}")
    for combo in report.op_input_dtypes.get("EXP", []):
        if combo.split(",")[0] != "float32":
            problems.append(f"EXP on {combo} (TFLM EXP is float32-only)")
    for combo in report.op_input_dtypes.get("BATCH_MATMUL", []):
        kinds = combo.split(",")[:2]
        if len(set(kinds)) != 1:
            problems.append(f"BATCH_MATMUL with inputs {combo} (TFLM needs lhs and rhs of one dtype)")
    if report.dynamic_tensors:
        problems.append(f"dynamic tensor dimensions in {list(report.dynamic_tensors)[:5]}")
    if problems:
        raise ModelCheckError("model is not TFLite-Micro compatible: " + "; ".join(problems))
    return report


def size_breakdown(model_bytes: bytes) -> dict:
    """Where a .tflite file's bytes go: `{"constants": {dtype: bytes}, "quantization_params": bytes,
    "other": bytes, "total": bytes}`.

    constants: each distinct constant buffer once, by the dtype of its tensor (int8 weights, int32
    biases, float32 weights...). quantization_params: the scale (float32) and zero-point (int64)
    vectors in the file, each vector once however many tensors refer to it (4-byte length + 4 bytes
    per scale, 4-byte length + 8 bytes per zero point): a converter's file has one pair per
    quantized tensor, so per-channel weights and biases cost 12 bytes per output channel; a file
    written by `tf_todm.export.compact` shares them. other: the rest (operators, tensor and
    quantization tables, shapes, names, signatures, alignment padding).
    """
    model = parse_model(model_bytes)
    constants: dict = {}
    seen = set()
    for sg in model.subgraphs or []:
        for t in sg.tensors or []:
            buffer = model.buffers[t.buffer] if t.buffer is not None else None
            if buffer is None or buffer.data is None or len(buffer.data) == 0 or t.buffer in seen:
                continue
            seen.add(t.buffer)
            dtype = _TYPE_NAMES.get(t.type, str(t.type))
            constants[dtype] = constants.get(dtype, 0) + len(buffer.data)
    qparams = sum(quantization_vector_bytes(model_bytes).values())
    total = len(model_bytes)
    return {"constants": dict(sorted(constants.items())), "quantization_params": qparams,
            "other": total - sum(constants.values()) - qparams, "total": total}


def quantization_vector_bytes(model_bytes: bytes) -> dict:
    """{file position: bytes} of every distinct scale and zero-point vector the tensors refer to."""
    import flatbuffers

    root = _fb.Model.GetRootAs(bytearray(model_bytes), 0)
    vectors = {}
    for s in range(root.SubgraphsLength()):
        sg = root.Subgraphs(s)
        for i in range(sg.TensorsLength()):
            q = sg.Tensors(i).Quantization()
            if q is None:
                continue
            for field, itemsize in ((8, 4), (10, 8)):  # vtable slots: scale (float32), zero_point (int64)
                slot = flatbuffers.number_types.UOffsetTFlags.py_type(q._tab.Offset(field))
                if slot:
                    vectors[q._tab.Vector(slot)] = 4 + itemsize * q._tab.VectorLen(slot)
    return vectors


def describe(model_bytes: bytes) -> str:
    """A short human-readable summary (one line per field)."""
    r = op_report(model_bytes)
    return "\n".join([
        f"size: {r.size_bytes} bytes",
        f"signatures: {sorted(r.signatures)}",
        f"ops ({len(r.ops)}): {' '.join(r.ops)}",
        f"tensor dtypes: {' '.join(r.tensor_dtypes)}",
        f"quantized tensors: {r.num_per_channel_tensors} per-channel, {r.num_per_tensor_quantized} per-tensor",
        f"custom ops: {list(r.custom_ops) or 'none'}",
    ])


def to_numpy_dtype(name: str):
    """Maps a report dtype name ("float32", "int8", ...) to numpy."""
    return np.dtype(name)


def subgraph_io_order(model_bytes: bytes, signature: str) -> tuple[list[str], list[str]]:
    """Signature input/output names in the subgraph's tensor order (how TFLM indexes them)."""
    model = parse_model(model_bytes)
    for sd in model.signatureDefs or []:
        if _as_str(sd.signatureKey) == signature:
            sg = model.subgraphs[sd.subgraphIndex]
            by_index = {tm.tensorIndex: _as_str(tm.name) for tm in (sd.inputs or []) + (sd.outputs or [])}
            return ([by_index[i] for i in sg.inputs], [by_index[i] for i in sg.outputs])
    raise ModelCheckError(f"no signature {signature!r} in the model")
