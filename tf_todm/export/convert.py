"""TFLite conversion with named signatures, builtin ops only.

`convert(signatures, mode, representative_dataset)` turns a dict of concrete functions into one
`.tflite` flatbuffer whose signature keys are the dict keys. The functions go through a temporary
SavedModel (`tf.saved_model.save(..., signatures=...)`), the only converter path that keeps
user-chosen signature names for several functions at once.

Modes (`MODES`):
  * `float32`: plain float model.
  * `float16`: float16 weights, float32 compute (weights dequantized at load).
  * `dynamic_int8`: int8 weights (per-channel where the kernel allows), float activations with
    dynamic-range (hybrid) kernels. Needs no data.
  * `full_int8`: int8 weights AND activations (TFLITE_BUILTINS_INT8), calibrated on
    `representative_dataset`. Inputs and outputs stay float32 by default (the model starts with
    QUANTIZE and ends with DEQUANTIZE) so the app and the sidecar are mode-independent;
    `int8_io=True` makes the input/output tensors int8 as a microcontroller build wants them.
    Weights are per-channel (converter default; `op_report` shows the scale counts).
  * `int16x8`: int16 activations, int8 weights
    (EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8), calibrated the same way; ops
    with no 16x8 kernel fall back to float32. Two things break this mode on a stock Keras
    Conformer, both handled: (1) Keras' LayerNormalization emits SQUARED_DIFFERENCE, which the
    quantizer turns int16 although LiteRT has no int16 kernel for it (the model converts, then
    fails at run time) -- the models use `tf_todm.models.layer_norm.LayerNorm` (MUL, no
    SQUARED_DIFFERENCE); (2) the 16x8 quantizer (the old C++ one; the MLIR quantizer only does
    int8) asks for calibration ranges of int32 tensors that feed comparisons (the streaming
    encoder's `offset >= ...` cache-validity test) and fails with "Max and min for dynamic tensors
    should be recorded during calibration" -- `_quantize_int16x8` calibrates, gives those integer
    tensors a placeholder range (they stay int32, the quantizer only rewrites float tensors) and
    strips it again after quantization.

Tensor names are debug strings (the graph's op paths, ~27 bytes per tensor) that no runtime reads:
signatures address tensors by index and carry their own input/output names. `convert` strips them
by default (`strip_names`), ~1.4% of a full-int8 phone model; `strip_names=False` keeps them for
inspection (e.g. in Netron). Every model is then written with each distinct quantization vector
and table once (`tf_todm.export.compact`): the per-channel zero points of a full-int8 model are
all 0, and written once per tensor they were ~8% of the file.

No mode ever enables SELECT_TF_OPS: TF 2.21 wheels ship no Flex delegate, so a model that would need
it fails conversion here with `ConversionError` naming the ops.

`fake_quant(x, min, max)` is the QAT building block: `tf.quantization.fake_quant_with_min_max_vars`
(tfmot's Keras wrappers reject Keras 3 models, see `TFMOT_KERAS3_ERROR`).
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import numpy as np

from tf_todm.export.compact import clear_names, compact_model, write_model

if TYPE_CHECKING:  # TF is imported inside the functions, so that reading `MODES` (sidecar.py, hence
    import tensorflow as tf  # the evaluator's per-model memory probe) does not cost a TF import.

MODES = ("float32", "float16", "dynamic_int8", "full_int8", "int16x8")
"""Quantization modes `convert` accepts."""

CALIBRATION_MODES = ("full_int8", "int16x8")
"""Modes that need a representative dataset."""

TFMOT_KERAS3_ERROR = "`to_quantize` can only either be a keras Sequential or Functional model."
"""What `tfmot.quantization.keras.quantize_model(keras3_model)` raises (tfmot 0.8.1, Keras 3.15);
checked by tests/export/test_convert.py."""

RepresentativeDataset = Callable[[], Iterable]
"""A zero-argument callable yielding calibration samples. For a single-signature model a sample is
a dict {input_name: np.ndarray}; for several signatures it is `(signature_name, dict)`."""


class ConversionError(ValueError):
    """The converter could not produce a builtin-only model (message names the mode and the ops)."""


def convert(
    signatures: Mapping[str, tf.types.experimental.ConcreteFunction],
    mode: str,
    representative_dataset: RepresentativeDataset | None = None,
    *,
    int8_io: bool = False,
    trackable: tf.Module | None = None,
    verify: bool = True,
    strip_names: bool = True,
) -> bytes:
    """Converts concrete functions to a `.tflite` flatbuffer with named signatures.

    Args:
      signatures: signature name -> concrete function (static input shapes recommended; every
        input must be named, i.e. traced from `tf.TensorSpec(..., name=...)` or argument names).
        The functions should return a dict of named outputs.
      mode: one of `MODES`.
      representative_dataset: required for `CALIBRATION_MODES`, ignored otherwise.
      int8_io: only for `full_int8`: int8 input/output tensors instead of float32.
      trackable: object owning the functions' variables (e.g. the `tf.Module`); defaults to a new
        module holding the functions, which tracks their captured variables.
      verify: run every signature once on zeros in LiteRT (`smoke_test`) before returning.
      strip_names: drop the tensor and subgraph names (`compact.clear_names`).

    Returns:
      The flatbuffer bytes.

    Raises:
      ValueError: bad mode / missing dataset. ConversionError: converter failure.
    """
    import tensorflow as tf

    if mode not in MODES:
        raise ValueError(f"convert: mode={mode!r} is not one of {MODES}")
    if not signatures:
        raise ValueError("convert: signatures is empty, expected at least one concrete function")
    if mode in CALIBRATION_MODES and representative_dataset is None:
        raise ValueError(f"convert: mode={mode!r} needs a representative_dataset")
    if int8_io and mode != "full_int8":
        raise ValueError(f"convert: int8_io=True is only valid with mode='full_int8', got {mode!r}")

    module = trackable if trackable is not None else tf.Module()
    if trackable is None:  # track every variable the functions capture, or saving refuses them
        module._export_variables = [v for fn in signatures.values() for v in fn.variables]
    with tempfile.TemporaryDirectory(prefix="tf_todm_convert_") as tmp:
        saved = os.path.join(tmp, "saved_model")
        tf.saved_model.save(module, saved, signatures=dict(signatures))
        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved, signature_keys=list(signatures)
        )
        _configure(converter, mode, representative_dataset, int8_io, list(signatures))
        try:
            if mode == "int16x8":  # parses the flatbuffer anyway: strips names in that pass
                model = _quantize_int16x8(converter, strip_names)
            else:
                model = converter.convert()
        except Exception as e:  # the converter raises ConverterError / RuntimeError / ValueError
            text = str(e).strip().splitlines()
            head = next((l for l in text if "error" in l.lower() or "not" in l.lower()),
                        text[0] if text else repr(e))
            raise ConversionError(f"convert(mode={mode!r}) failed: {head}") from e
    if mode != "int16x8":  # _quantize_int16x8 writes its model compactly itself
        model = compact_model(model, strip_names)
    if verify:
        smoke_test(model, mode)
    return model


def smoke_test(model: bytes, mode: str = "?") -> None:
    """Runs every signature once on zeros in LiteRT; raises ConversionError if one cannot run.

    Catches models that convert but have no kernel (e.g. int16 SQUARED_DIFFERENCE in int16x8).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model, num_threads=1)
    for name in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(name)
        try:
            inputs = {k: np.zeros(d["shape"], d["dtype"]) for k, d in runner.get_input_details().items()}
            runner(**inputs)
        except Exception as e:
            raise ConversionError(
                f"convert(mode={mode!r}) produced a model whose signature {name!r} fails in LiteRT: "
                f"{str(e).strip().splitlines()[0]}"
            ) from e


def _configure(converter, mode, representative_dataset, int8_io, names):
    import tensorflow as tf

    builtins = tf.lite.OpsSet.TFLITE_BUILTINS
    converter.target_spec.supported_ops = [builtins]
    converter.allow_custom_ops = False
    # Keep LSTMs fused (UNIDIRECTIONAL_SEQUENCE_LSTM) and avoid TensorList lowering.
    converter._experimental_lower_tensor_list_ops = True
    if mode == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if mode == "dynamic_int8":
        return
    converter.representative_dataset = _wrap_dataset(representative_dataset, names)
    if mode == "full_int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return
    # Ops without a 16x8 kernel stay float32 (TFLITE_BUILTINS fallback).
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8, builtins,
    ]


def _quantize_int16x8(converter, strip_names: bool = True) -> bytes:
    """Calibrate, give integer activation tensors a placeholder range, quantize 16x8, unmark
    (and, with `strip_names`, drop the tensor names in the same pass), write compactly.

    The 16x8 quantizer demands min/max for every non-constant input of a quantizable op, also
    int32 ones (e.g. GREATER_EQUAL on the int32 stream offset) that calibration never records.
    Such tensors keep their type (only float tensors are rewritten), so a placeholder range
    [0, 1] is inert; it is removed from the final model (`_strip_placeholder_ranges`).
    """
    import tensorflow as tf

    from tensorflow.lite.python.optimize import calibrator as calibrator_lib
    from tensorflow.lite.tools import flatbuffer_utils

    gen = converter.representative_dataset
    converter._experimental_calibrate_only = True  # float model + recorded ranges, not quantized
    calibrated = converter.convert()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    marked = _mark_integer_tensors(model)
    patched = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    quantized = calibrator_lib.Calibrator(patched).calibrate_and_quantize(
        gen, tf.float32, tf.float32, True, activations_type=tf.int16, bias_type=tf.int64)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(quantized))
    _strip_placeholder_ranges(model, marked)  # finds the marked tensors by name: strip after it
    if strip_names:
        clear_names(model)
    return write_model(model)


def _mark_integer_tensors(model) -> set:
    """Gives every non-constant integer/bool tensor without a range min=0, max=1 (in place).

    Returns {(subgraph index, tensor name)} of the marked tensors."""
    from tensorflow.lite.python import schema_py_generated as schema

    floats = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16)
    marked = set()
    for g, sg in enumerate(model.subgraphs or []):
        for t in sg.tensors or []:
            buffer = model.buffers[t.buffer] if t.buffer is not None and t.buffer < len(model.buffers) else None
            constant = buffer is not None and buffer.data is not None and len(buffer.data) > 0
            q = t.quantization
            has_range = q is not None and q.min is not None and len(q.min) > 0
            if t.type in floats or constant or has_range:
                continue
            q = schema.QuantizationParametersT()
            q.min, q.max = [0.0], [1.0]
            t.quantization = q
            marked.add((g, t.name))
    return marked


def _strip_placeholder_ranges(model, marked: set) -> None:
    """Removes ranges without a scale (placeholders, or recorded by the calibrator) from integer
    and bool tensors (in place); raises if a marked tensor was re-typed to a quantized type."""
    from tensorflow.lite.python import schema_py_generated as schema

    keep = (schema.TensorType.INT32, schema.TensorType.INT64, schema.TensorType.BOOL)
    for g, sg in enumerate(model.subgraphs or []):
        for t in sg.tensors or []:
            q = t.quantization
            if (g, t.name) in marked and t.type not in keep:
                raise ConversionError(f"convert(mode='int16x8'): integer tensor {t.name!r} was re-typed "
                                      "by the quantizer (unexpected)")
            if t.type in keep and q is not None and (q.scale is None or len(q.scale) == 0):
                t.quantization = None


def _wrap_dataset(representative_dataset, names):
    """Adapts samples to what the converter's calibrator expects."""

    def gen():
        for sample in representative_dataset():
            if isinstance(sample, tuple) and len(sample) == 2 and isinstance(sample[0], str):
                name, inputs = sample
            elif len(names) == 1:
                name, inputs = names[0], sample
            else:
                raise ValueError(
                    "representative_dataset: with several signatures each sample must be "
                    f"(signature_name, dict), signatures are {names}"
                )
            yield name, {k: np.asarray(v) for k, v in inputs.items()}

    return gen


def fake_quant(x: tf.Tensor, min_value: tf.Tensor | float, max_value: tf.Tensor | float,
               num_bits: int = 8, narrow_range: bool = False) -> tf.Tensor:
    """Quantize-dequantize `x` to `num_bits` on [min_value, max_value] (straight-through gradient).

    The converter folds this op into the quantization parameters of the tensor it follows, so a
    QAT-trained graph converts with the learned ranges.
    """
    import tensorflow as tf

    return tf.quantization.fake_quant_with_min_max_vars(
        x, tf.cast(min_value, tf.float32), tf.cast(max_value, tf.float32),
        num_bits=num_bits, narrow_range=narrow_range,
    )


def representative_from_features(
    feature_batches: Iterable[np.ndarray], make_inputs: Callable[[np.ndarray], Iterable],
    max_samples: int = 100,
) -> RepresentativeDataset:
    """Builds a representative dataset from training features.

    Args:
      feature_batches: iterable of arrays (e.g. `[T, 80]` log-mels or `[N]` PCM of training
        utterances).
      make_inputs: maps one array to an iterable of converter samples (e.g. the per-chunk inputs
        of a streaming run, each `(signature_name, {input: array})`).
      max_samples: cap on the number of samples yielded.
    """
    cached = [np.asarray(f) for f in feature_batches]

    def gen():
        count = 0
        for f in cached:
            for sample in make_inputs(f):
                yield sample
                count += 1
                if count >= max_samples:
                    return

    return gen
