"""One supernet training step by the sandwich rule with in-place distillation (AlphaNet / TODM).

Per step, on ONE batch:
  1. the largest subnet learns from the labels (transducer loss), with its own (adaptive) dropout;
     its joiner logits, detached, become the soft targets;
  2. `k` random subnets and the smallest subnet each learn from the soft targets
     (adaptive alpha-divergence) plus `label_loss_weight` x the label loss, each with the dropout
     rate adapted to its size;
  3. the gradients of all `k + 2` subnets are SUMMED; the caller applies ONE optimizer step.

Subnets are sampled in Python from a generator seeded by `(seed, step)` (a pure function of the
step, so a resumed run samples the same subnets) and enter the traced step as tensors
(`encode_subnet`), so one `tf.function` trace serves every subnet.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_todm.models.elastic_space import SearchSpace, SubnetConfig


def sample_sandwich(space: SearchSpace, seed: int, step: int, num_random: int) -> list[SubnetConfig]:
    """`[largest, num_random random subnets, smallest]` for `step`; pure in `(seed, step)`."""
    rng = np.random.default_rng([int(seed), int(step)])
    return [space.largest()] + [space.sample(rng) for _ in range(num_random)] + [space.smallest()]


def linear_rate(size: float, smallest: float, largest: float, rate_min: float, rate_max: float) -> float:
    """Rate growing linearly with subnet size: `rate_min` at the smallest, `rate_max` at the largest."""
    if largest <= smallest:
        return float(rate_max)
    frac = min(1.0, max(0.0, (size - smallest) / (largest - smallest)))
    return float(rate_min + frac * (rate_max - rate_min))


def zeros_for_none(grads: Sequence[Optional[tf.Tensor]], variables) -> list[tf.Tensor]:
    """Replaces `None` gradients (variables a subnet does not touch) with zeros."""
    return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(grads, variables)]


def sandwich_gradients(compute_losses: Callable, variables, batch: dict, subnets: Sequence,
                       global_batch_size) -> tuple[list[tf.Tensor], dict]:
    """Summed gradients of the teacher (first subnet) and the students (the rest).

    Args:
      compute_losses: `(batch, subnet, teacher, global_batch_size) -> dict` with "loss" (scalar,
        already normalised by the global batch), "soft_targets" (detached teacher targets, used
        from the first subnet) and any per-subnet scalars to report.
      variables: trainable variables to differentiate.
      batch: the input dict.
      subnets: `[teacher, student, ...]` tensor encodings (`None` = full model); with a single
        entry this is plain supervised training.
      global_batch_size: utterances in the global batch (int32 scalar tensor).

    Returns:
      (grads aligned with `variables`, scalars) where scalars holds "loss" (sum over subnets) and
      `"<name>/<key>"` per subnet ("largest", "random<i>", "smallest").
    """
    names = _subnet_names(subnets)
    total_grads = None
    scalars = {}
    teacher = None
    total_loss = tf.constant(0.0)
    for i, subnet in enumerate(subnets):
        with tf.GradientTape() as tape:
            out = compute_losses(batch, subnet, teacher, global_batch_size)
        grads = zeros_for_none(tape.gradient(out["loss"], variables), variables)
        total_grads = grads if total_grads is None else [a + b for a, b in zip(total_grads, grads)]
        if i == 0 and len(subnets) > 1:
            teacher = out["soft_targets"]
        total_loss = total_loss + out["loss"]
        for key, value in out.items():
            if key != "soft_targets" and value.shape.rank == 0:
                scalars[f"{names[i]}/{key}"] = value
    scalars["loss"] = total_loss
    return total_grads, scalars


def _subnet_names(subnets: Sequence) -> list[str]:
    """Scalar prefixes: "model" for the plain full model (`[None]`), else "largest" first (also
    alone, in a supernet's largest-only warm-up, so its curve continues), "random<i>", "smallest"."""
    n = len(subnets)
    if n == 1:
        return ["model" if subnets[0] is None else "largest"]
    return ["largest"] + [f"random{i}" for i in range(n - 2)] + ["smallest"]
