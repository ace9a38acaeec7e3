"""ScaledAdam (icefall's optimizer, re-derived from its description) as a Keras 3 optimizer.

Per step t (0-based, see "Step counter" below), with g the clipped gradient of parameter p:

1. Whole-model median-window clipping (`tf_todm.optim.clipping`).
2. Non-scalar p (more than one element):
   - `delta <- beta_1 * delta` (delta is the momentum buffer: the decayed sum of parameter changes).
   - `scale_grads[t % S] = sum(p * g)` (S = `size_update_period`).
   - At t = 0 and whenever `t % S == S - 1`: `param_rms <- sqrt(mean(p^2))`.
   - When `t % S == S - 1` and t > 0, the learned-scale step: `w = beta_2 ** S`,
     `s <- w * s + (1 - w) * mean_k(scale_grads[k]^2)`, `c = 1 - w ** ((t + 1) // S)`,
     `step = -lr * scalar_lr_scale * sqrt(c) * sum_k scale_grads[k] / (sqrt(s) + epsilon)`,
     zeroed where `param_rms < param_min_rms`, clamped to [-0.1, 0.1], then capped at
     `(param_max_rms - param_rms) / param_rms`; `delta += (1 - beta_1) * p * step`.
   - Adam without momentum: `v <- beta_2 * v + (1 - beta_2) * g^2`; `v_hat = v / (1 - beta_2^(t+1))`
     while that correction is < 0.99, else `v`;
     `delta += -lr * (1 - beta_1) * max(param_rms, param_min_rms) * g / (sqrt(v_hat) + epsilon)`.
   - `p <- p + delta` (momentum without beta_1 bias correction).
3. Scalar p (one element): `v` as above but always bias-corrected;
   `delta <- beta_1 * delta - lr * scalar_lr_scale * (1 - beta_1) * g / (sqrt(v_hat) + epsilon)`;
   `p <- clip(p, -scalar_max, scalar_max) + delta` (clamp before the add, as icefall does).

Step counter: the algorithm's t is `iterations - num_skipped_steps`. A step whose scaled gradient
norm is not finite (inf/nan anywhere) changes no weight and no slot; it only adds 1 to the
optimizer variable `num_skipped_steps` (Keras still advances `iterations`, so a learning-rate
schedule keeps counting batches). icefall instead zeroes such gradients but still decays momentum.

Distribution: the hook is `_backend_update_step` (called by `apply`/`apply_gradients`, also under
gradient accumulation): gradients are all-reduced first, clipping is computed from the reduced
gradients (identical on every replica), then every variable and slot is written through
`distribution.extended.update`, so it works eagerly, under `tf.function` and inside
`MirroredStrategy.run`.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras.src import backend as keras_backend

from tf_todm.optim import clipping


def _num_elements(variable) -> int:
    return int(math.prod(int(d) for d in variable.shape))


def _rms(x: tf.Tensor) -> tf.Tensor:
    return tf.sqrt(tf.reduce_mean(tf.square(x)))


@keras.saving.register_keras_serializable(package="tf_todm")
class ScaledAdam(keras.optimizers.Optimizer):
    """ScaledAdam: Adam whose step is scaled by each tensor's RMS, plus a learned tensor scale.

    Args:
      learning_rate: float or `LearningRateSchedule` (e.g. `tf_todm.optim.Eden`). Default 0.045.
      clipping_scale: float or None; clip the RMS-weighted global gradient norm at
        `clipping_scale * median` of recent norms. Default 2.0.
      beta_1: momentum coefficient. Default 0.9.
      beta_2: second-moment coefficient. Default 0.98.
      scalar_lr_scale: learning-rate factor for scalar parameters and for the learned scales. 0.1.
      epsilon: denominator epsilon. Default 1e-8.
      param_min_rms: lower RMS limit (update scale floor; the learned scale stops shrinking). 1e-5.
      param_max_rms: upper RMS limit of the learned scale. Default 3.0.
      scalar_max: scalar parameters are clamped to [-scalar_max, scalar_max]. Default 10.0.
      size_update_period: steps between learned-scale updates / param_rms refreshes. Default 4.
      clipping_update_period: length of the norm window and threshold refresh period. Default 100.
      **kwargs: `keras.optimizers.Optimizer` arguments (name, gradient_accumulation_steps, ...).

    Optimizer variables beyond Keras': `num_skipped_steps` (int64), `last_grad_norm` and
    `last_clip_factor` (float32, for logging), the norm window and the threshold.
    Sparse (`IndexedSlices`) gradients are densified. Call `apply` once per step with the whole
    gradient list: the clipping norm is taken over exactly the gradients of that call.

    Example (custom loop under a strategy; the loss is already divided by the global batch):
    ```python
    with strategy.scope():
        optimizer = ScaledAdam(learning_rate=Eden(0.045, lr_batches=7500, lr_epochs=3.5,
                                                  warmup_start=0.1, steps_per_epoch=n))
        optimizer.build(model.trainable_variables)
    # inside strategy.run(...):
    optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
    ```
    """

    def __init__(
        self,
        learning_rate=0.045,
        clipping_scale=2.0,
        beta_1=0.9,
        beta_2=0.98,
        scalar_lr_scale=0.1,
        epsilon=1e-8,
        param_min_rms=1e-5,
        param_max_rms=3.0,
        scalar_max=10.0,
        size_update_period=4,
        clipping_update_period=100,
        name="scaled_adam",
        **kwargs,
    ):
        if not 0.0 <= beta_1 < 1.0 or not 0.0 <= beta_2 < 1.0:
            raise ValueError(f"ScaledAdam: beta_1={beta_1}, beta_2={beta_2}; expected in [0, 1)")
        if int(size_update_period) < 1 or int(clipping_update_period) < 1:
            raise ValueError(
                f"ScaledAdam: size_update_period={size_update_period}, clipping_update_period="
                f"{clipping_update_period}; expected integers >= 1"
            )
        if clipping_scale is not None and clipping_scale <= 0:
            raise ValueError(f"ScaledAdam: clipping_scale={clipping_scale}; expected > 0 or None")
        if not 0 < param_min_rms < param_max_rms:
            raise ValueError(
                f"ScaledAdam: param_min_rms={param_min_rms}, param_max_rms={param_max_rms}; "
                "expected 0 < param_min_rms < param_max_rms"
            )
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.clipping_scale = None if clipping_scale is None else float(clipping_scale)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.scalar_lr_scale = float(scalar_lr_scale)
        self.epsilon = float(epsilon)
        self.param_min_rms = float(param_min_rms)
        self.param_max_rms = float(param_max_rms)
        self.scalar_max = float(scalar_max)
        self.size_update_period = int(size_update_period)
        self.clipping_update_period = int(clipping_update_period)

    # ------------------------------------------------------------------ slots
    def build(self, var_list):
        """Creates the slots: per variable `exp_avg_sq`, `delta` (momentum), and for non-scalars
        `param_rms` [], `scale_grads` [size_update_period], `scale_exp_avg_sq` []; globally the
        clipping norm window, threshold, `num_skipped_steps`, `last_grad_norm`, `last_clip_factor`.
        """
        if self.built:
            return
        super().build(var_list)
        self._exp_avg_sqs = []
        self._deltas = []
        self._param_rms = []
        self._scale_grads = []
        self._scale_exp_avg_sqs = []
        self._is_scalar = []
        for var in var_list:
            self._exp_avg_sqs.append(self.add_variable_from_reference(var, "exp_avg_sq"))
            self._deltas.append(self.add_variable_from_reference(var, "delta"))
            scalar = _num_elements(var) == 1
            self._is_scalar.append(scalar)
            if scalar:
                self._param_rms.append(None)
                self._scale_grads.append(None)
                self._scale_exp_avg_sqs.append(None)
                continue
            prefix = var.path.replace("/", "_") if hasattr(var, "path") else var.name
            self._param_rms.append(
                self.add_variable((), dtype="float32", name=f"{prefix}_param_rms")
            )
            self._scale_grads.append(
                self.add_variable(
                    (self.size_update_period,), dtype="float32", name=f"{prefix}_scale_grads"
                )
            )
            self._scale_exp_avg_sqs.append(
                self.add_variable((), dtype="float32", name=f"{prefix}_scale_exp_avg_sq")
            )
        self._norm_history = self.add_variable(
            (self.clipping_update_period,), dtype="float32", name="clip_norm_history",
            aggregation="only_first_replica",
        )
        self._norm_threshold = self.add_variable(
            (), initializer=keras.initializers.Constant(float("inf")), dtype="float32",
            name="clip_norm_threshold", aggregation="only_first_replica",
        )
        self._num_skipped_steps = self.add_variable(
            (), dtype="int64", name="num_skipped_steps", aggregation="only_first_replica"
        )
        self._last_grad_norm = self.add_variable(
            (), dtype="float32", name="last_grad_norm", aggregation="only_first_replica"
        )
        self._last_clip_factor = self.add_variable(
            (), initializer="ones", dtype="float32", name="last_clip_factor",
            aggregation="only_first_replica",
        )

    @property
    def num_skipped_steps(self):
        """int64 variable: steps skipped because the gradient norm was not finite."""
        return self._num_skipped_steps

    @property
    def last_grad_norm(self):
        """float32 variable: RMS-weighted gradient norm of the last step, before clipping."""
        return self._last_grad_norm

    @property
    def last_clip_factor(self):
        """float32 variable: factor the last step's gradients were multiplied by (0 if skipped)."""
        return self._last_clip_factor

    def algorithm_step(self) -> tf.Tensor:
        """int64 scalar t = `iterations - num_skipped_steps` (updates actually applied so far)."""
        return tf.cast(self.iterations, tf.int64) - tf.cast(
            self._num_skipped_steps.value, tf.int64
        )

    # ------------------------------------------------------------- the step
    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        tf_vars = [
            v.value if isinstance(v, keras_backend.Variable) else v for v in trainable_variables
        ]
        # Sparse gradients (embedding lookups) are densified: the update touches every element.
        grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
        grads_and_vars = self._all_reduce_sum_gradients(list(zip(grads, tf_vars)))
        grads = [g for g, _ in grads_and_vars]
        tf_vars = [v for _, v in grads_and_vars]
        step = self.algorithm_step()
        param_rms = []
        for var in tf_vars:
            idx = self._get_variable_index(var)
            if self._is_scalar[idx]:
                param_rms.append(None)
            else:
                fresh = _rms(tf.cast(var, tf.float32))
                param_rms.append(tf.where(tf.equal(step, 0), fresh, self._param_rms[idx].value))
        clip = clipping.median_window_clip(
            grads,
            param_rms,
            tf.convert_to_tensor(self._norm_history.value),
            tf.convert_to_tensor(self._norm_threshold.value),
            step,
            clipping_scale=self.clipping_scale,
            clipping_update_period=self.clipping_update_period,
            scalar_lr_scale=self.scalar_lr_scale,
        )
        tf.__internal__.distribute.interim.maybe_merge_call(
            self._distributed_scaled_update,
            self._distribution_strategy,
            list(zip(clip.grads, tf_vars)),
            learning_rate,
            step,
            clip.finite,
            (clip.norm_history, clip.threshold, clip.tot_norm, clip.factor),
        )

    def _distributed_scaled_update(
        self, distribution, grads_and_vars, learning_rate, step, finite, clip_state
    ):
        history, threshold, tot_norm, factor = clip_state

        def set_value(variable, value):
            return variable.assign(tf.cast(value, variable.dtype))

        def count_skip(variable, is_finite):
            return variable.assign_add(tf.cast(tf.logical_not(is_finite), variable.dtype))

        for variable, value in (
            (self._norm_history, history),
            (self._norm_threshold, threshold),
            (self._last_grad_norm, tot_norm),
            (self._last_clip_factor, factor),
        ):
            distribution.extended.update(variable.value, set_value, args=(value,), group=False)
        distribution.extended.update(
            self._num_skipped_steps.value, count_skip, args=(finite,), group=False
        )
        for grad, var in grads_and_vars:
            distribution.extended.update(
                var, self._update_one, args=(grad, learning_rate, step, finite), group=False
            )

    def update_step(self, gradient, variable, learning_rate):
        """Per-variable update without clipping or skipping (`apply` does both; prefer it)."""
        self._update_one(variable, gradient, learning_rate, self.algorithm_step(), True)

    def _update_one(self, variable, gradient, learning_rate, step, finite):
        idx = self._get_variable_index(variable)
        if self._is_scalar[idx]:
            body = lambda: self._scalar_update(idx, variable, gradient, learning_rate, step)
        else:
            body = lambda: self._tensor_update(idx, variable, gradient, learning_rate, step)

        def run():
            body()
            return tf.constant(True)

        return tf.cond(tf.convert_to_tensor(finite), run, lambda: tf.constant(False))

    def _tensor_update(self, idx, variable, gradient, learning_rate, step):
        dtype = variable.dtype
        p = tf.convert_to_tensor(variable)
        g = tf.cast(gradient, dtype)
        lr = tf.cast(learning_rate, dtype)
        beta_1, beta_2, eps = self.beta_1, self.beta_2, self.epsilon
        period = self.size_update_period
        t = tf.cast(step, tf.int64)
        phase = tf.math.floormod(t, period)
        at_period_end = tf.equal(phase, period - 1)

        delta = beta_1 * tf.convert_to_tensor(self._deltas[idx].value)

        p32 = tf.cast(p, tf.float32)
        refresh_rms = tf.logical_or(tf.equal(t, 0), at_period_end)
        param_rms = tf.where(refresh_rms, _rms(p32), self._param_rms[idx].value)
        self.assign(self._param_rms[idx], param_rms)

        scale_grads = tf.tensor_scatter_nd_update(
            tf.convert_to_tensor(self._scale_grads[idx].value),
            tf.reshape(phase, [1, 1]),
            tf.reshape(tf.reduce_sum(p32 * tf.cast(g, tf.float32)), [1]),
        )
        self.assign(self._scale_grads[idx], scale_grads)

        # Learned-scale ("size") step, every `period` steps.
        do_size = tf.logical_and(at_period_end, t > 0)
        beta_2_corr = beta_2**period
        old_s = tf.convert_to_tensor(self._scale_exp_avg_sqs[idx].value)
        new_s = beta_2_corr * old_s + (1.0 - beta_2_corr) * tf.reduce_mean(tf.square(scale_grads))
        size_step = tf.cast((t + 1) // period, tf.float32)
        correction = 1.0 - tf.pow(tf.constant(beta_2_corr, tf.float32), size_step)
        size_lr = tf.cast(lr, tf.float32) * self.scalar_lr_scale
        scale_step = (
            -size_lr * tf.sqrt(correction) * tf.reduce_sum(scale_grads) / (tf.sqrt(new_s) + eps)
        )
        scale_step = tf.where(param_rms < self.param_min_rms, 0.0, scale_step)
        scale_step = tf.clip_by_value(scale_step, -0.1, 0.1)
        scale_step = tf.minimum(
            scale_step, (self.param_max_rms - param_rms) / tf.maximum(param_rms, 1e-30)
        )
        self.assign(self._scale_exp_avg_sqs[idx], tf.where(do_size, new_s, old_s))
        size_change = (1.0 - beta_1) * p * tf.cast(scale_step, dtype)
        delta += tf.where(do_size, size_change, tf.zeros_like(p))

        # Adam step without momentum, scaled by the parameter RMS.
        v = beta_2 * tf.convert_to_tensor(self._exp_avg_sqs[idx].value) + (1.0 - beta_2) * g * g
        self.assign(self._exp_avg_sqs[idx], v)
        correction2 = 1.0 - tf.pow(tf.constant(beta_2, dtype), tf.cast(t + 1, dtype))
        v_hat = tf.where(correction2 < 0.99, v / correction2, v)
        rms_scale = tf.cast(tf.maximum(param_rms, self.param_min_rms), dtype)
        delta += -lr * (1.0 - beta_1) * rms_scale * g / (tf.sqrt(v_hat) + eps)

        self.assign(self._deltas[idx], delta)
        self.assign_add(variable, delta)

    def _scalar_update(self, idx, variable, gradient, learning_rate, step):
        dtype = variable.dtype
        g = tf.cast(gradient, dtype)
        lr = tf.cast(learning_rate, dtype) * self.scalar_lr_scale
        beta_1, beta_2 = self.beta_1, self.beta_2
        t = tf.cast(step, tf.int64)
        v = beta_2 * tf.convert_to_tensor(self._exp_avg_sqs[idx].value) + (1.0 - beta_2) * g * g
        self.assign(self._exp_avg_sqs[idx], v)
        correction2 = 1.0 - tf.pow(tf.constant(beta_2, dtype), tf.cast(t + 1, dtype))
        denom = tf.sqrt(v / correction2) + self.epsilon
        delta = beta_1 * tf.convert_to_tensor(self._deltas[idx].value)
        delta -= lr * (1.0 - beta_1) * g / denom
        self.assign(self._deltas[idx], delta)
        clamped = tf.clip_by_value(
            tf.convert_to_tensor(variable), -self.scalar_max, self.scalar_max
        )
        self.assign(variable, clamped + delta)

    # ----------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "clipping_scale": self.clipping_scale,
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "scalar_lr_scale": self.scalar_lr_scale,
                "epsilon": self.epsilon,
                "param_min_rms": self.param_min_rms,
                "param_max_rms": self.param_max_rms,
                "scalar_max": self.scalar_max,
                "size_update_period": self.size_update_period,
                "clipping_update_period": self.clipping_update_period,
            }
        )
        return config
