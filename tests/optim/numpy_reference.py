"""Independent float64 NumPy ScaledAdam / median clipping / Eden, written from the algorithm text.

Not a test module (no `test_` prefix); the tests load it by path. Structure follows the description
(per-parameter state dicts, a list of recorded norms), not the TF code.
"""
import math

import numpy as np

IRREGULAR = (10, 20, 40)


def eden_lr(step, base_lr, lr_batches=5000, lr_epochs=6, warmup_batches=500, warmup_start=0.5,
            steps_per_epoch=None, fractional_epoch=False):
    b = float(step)
    if steps_per_epoch is None:
        e = 0.0
    elif fractional_epoch:
        e = b / steps_per_epoch
    else:
        e = float(step // steps_per_epoch)
    factor = ((b**2 + lr_batches**2) / lr_batches**2) ** -0.25
    factor *= ((e**2 + lr_epochs**2) / lr_epochs**2) ** -0.25
    if b >= warmup_batches:
        warm = 1.0
    else:
        warm = warmup_start + (1.0 - warmup_start) * b / warmup_batches
    return base_lr * factor * warm


class MedianThreshold:
    """Threshold bookkeeping: norms recorded from step 1, refreshed at k*period and 10/20/40."""

    def __init__(self, clipping_scale, period):
        self.scale, self.period = clipping_scale, period
        self.norms = []  # every recorded norm, oldest first
        self.threshold = math.inf

    def observe(self, step, norm):
        if step == 0:
            return
        self.norms.append(float(norm))
        irregular = step in [s for s in IRREGULAR if s < self.period]
        if step % self.period == 0 or irregular:
            window = self.norms[-min(step, self.period):]
            ordered = sorted(window)
            n = len(ordered)
            median = ordered[min(n - 1, (n // 4) * 2)]
            self.threshold = self.scale * median * (2.0 if irregular else 1.0)


class RefScaledAdam:
    def __init__(self, params, lr=0.045, clipping_scale=2.0, beta_1=0.9, beta_2=0.98,
                 scalar_lr_scale=0.1, epsilon=1e-8, param_min_rms=1e-5, param_max_rms=3.0,
                 scalar_max=10.0, size_update_period=4, clipping_update_period=100):
        self.params = [np.array(p, dtype=np.float64) for p in params]
        self.lr = lr
        self.cs, self.b1, self.b2 = clipping_scale, beta_1, beta_2
        self.sls, self.eps = scalar_lr_scale, epsilon
        self.min_rms, self.max_rms, self.smax = param_min_rms, param_max_rms, scalar_max
        self.S = size_update_period
        self.clip = MedianThreshold(clipping_scale, clipping_update_period) if clipping_scale else None
        self.state = [None] * len(params)
        self.t = 0
        self.skipped = 0
        self.factors = []
        self.hits = {"min_rms": 0, "clamp": 0, "max_rms": 0}  # which scale-step limits bound

    def _lr(self, global_step):
        return self.lr(global_step) if callable(self.lr) else self.lr

    def step(self, grads, global_step):
        grads = [np.array(g, dtype=np.float64) for g in grads]
        for i, p in enumerate(self.params):
            if self.state[i] is None:
                st = {"delta": np.zeros_like(p), "v": np.zeros_like(p)}
                if p.size > 1:
                    st["rms"] = math.sqrt(np.mean(p**2))
                    st["sg"] = np.zeros(self.S)
                    st["sv"] = 0.0
                self.state[i] = st
        sumsq = 0.0
        for p, g, st in zip(self.params, grads, self.state):
            sumsq += np.sum(g**2) * self.sls**2 if p.size == 1 else np.sum((g * st["rms"]) ** 2)
        tot = math.sqrt(sumsq) if np.isfinite(sumsq) else math.inf
        if not np.isfinite(tot):
            self.skipped += 1
            self.factors.append(0.0)
            return
        factor = 1.0
        if self.clip is not None and self.t > 0:
            self.clip.observe(self.t, tot)
            factor = min(1.0, self.clip.threshold / (tot + 1e-20))
        self.factors.append(factor)
        lr = self._lr(global_step)
        for i, (p, g) in enumerate(zip(self.params, grads)):
            self._one(i, p, g * factor, lr)
        self.t += 1

    def _one(self, i, p, g, lr):
        st, t, b1, b2, eps = self.state[i], self.t, self.b1, self.b2, self.eps
        st["delta"] = b1 * st["delta"]
        if p.size == 1:
            st["v"] = b2 * st["v"] + (1 - b2) * g * g
            denom = np.sqrt(st["v"] / (1 - b2 ** (t + 1))) + eps
            st["delta"] = st["delta"] - lr * self.sls * (1 - b1) * g / denom
            self.params[i] = np.clip(p, -self.smax, self.smax) + st["delta"]
            return
        st["sg"][t % self.S] = np.sum(p * g)
        if t % self.S == self.S - 1:
            st["rms"] = math.sqrt(np.mean(p**2))
            if t > 0:
                w = b2**self.S
                st["sv"] = w * st["sv"] + (1 - w) * np.mean(st["sg"] ** 2)
                corr = 1 - w ** ((t + 1) // self.S)
                s = -lr * self.sls * math.sqrt(corr) * np.sum(st["sg"]) / (math.sqrt(st["sv"]) + eps)
                if st["rms"] < self.min_rms:
                    s = 0.0
                    self.hits["min_rms"] += 1
                if abs(s) > 0.1:
                    self.hits["clamp"] += 1
                s = min(max(s, -0.1), 0.1)
                cap = (self.max_rms - st["rms"]) / st["rms"]
                if s > cap:
                    self.hits["max_rms"] += 1
                s = min(s, cap)
                st["delta"] = st["delta"] + (1 - b1) * p * s
        st["v"] = b2 * st["v"] + (1 - b2) * g * g
        corr2 = 1 - b2 ** (t + 1)
        v_hat = st["v"] / corr2 if corr2 < 0.99 else st["v"]
        st["delta"] = st["delta"] - lr * (1 - b1) * max(st["rms"], self.min_rms) * g / (np.sqrt(v_hat) + eps)
        self.params[i] = p + st["delta"]
