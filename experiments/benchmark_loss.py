"""Benchmark the transducer losses, side by side in one run.

(a) exact loss: ours (closed-form gradient, no autodiff through the DP) vs a straightforward TF
    implementation (log_softmax + one-hot label gather + `tf.scan` over anti-diagonals,
    differentiated by autodiff, as TF peers do), forward + backward w.r.t. the logits.
(b) pruned path vs exact loss, forward + backward INCLUDING the joiner
    `logits = tanh(enc_proj + pred_proj) @ W` (full lattice [B,T,U+1] vs band [B,T,S]);
    gradients w.r.t. enc_proj, pred_proj and W. The pruned side also runs the simple loss
    (am = enc_proj @ W_am, lm = pred_proj @ W_lm) and the range selection.

Time: median over interleaved repeats in this process. Peak memory: TF's CPU allocator keeps no
stats, so each implementation runs in its own subprocess and reports its peak RSS growth
(VmHWM after a reset, minus VmRSS) over one forward+backward pass, after a first pass that
traces, XLA-compiles and warms caches.

    python -m experiments.benchmark_loss --output_json=artifacts/bench/loss.json
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch", 8, "B")
flags.DEFINE_integer("frames", 200, "T (encoder frames)")
flags.DEFINE_integer("labels", 50, "U")
flags.DEFINE_integer("vocab", 500, "V (blank included)")
flags.DEFINE_integer("joiner_dim", 256, "J, joiner hidden width for part (b)")
flags.DEFINE_integer("prune_range", 5, "S, band width of the pruned loss")
flags.DEFINE_integer("repeats", 5, "timed repeats per implementation (median reported)")
flags.DEFINE_string("output_json", None, "where to write the JSON result")
flags.DEFINE_boolean("measure_memory", True, "run one subprocess per implementation for peak RSS")
flags.DEFINE_string("worker", None, "internal: run one implementation and print its peak RSS")

IMPLEMENTATIONS = ("exact_ours", "exact_naive", "joiner_exact", "joiner_pruned")


class BenchmarkFlagError(ValueError):
    """A flag value outside its valid range."""


def _check_flags():
    for name in ("batch", "frames", "labels", "vocab", "joiner_dim", "repeats"):
        if getattr(FLAGS, name) < 1:
            raise BenchmarkFlagError(f"benchmark_loss: --{name} must be >= 1, "
                                     f"got {getattr(FLAGS, name)}")
    if FLAGS.prune_range < 2:
        raise BenchmarkFlagError(
            f"benchmark_loss: --prune_range must be >= 2, got {FLAGS.prune_range}")


def naive_rnnt_loss(logits, labels, logit_lengths, label_lengths, blank=0):
    """Straightforward TF RNN-T: everything auto-differentiated, one-hot label gather."""
    import tensorflow as tf

    from tf_todm.losses.rnnt import NEG_INF, logaddexp, skew

    vocab = tf.shape(logits)[-1]
    log_probs = tf.nn.log_softmax(logits, axis=-1)  # (B, T, U+1, V)
    one_hot = tf.one_hot(labels, vocab)  # (B, U, V)
    label_lp = tf.reduce_sum(log_probs[:, :, :-1, :] * one_hot[:, None], axis=-1)  # (B, T, U)
    label_lp = tf.pad(label_lp, [[0, 0], [0, 0], [0, 1]], constant_values=NEG_INF)
    blank_lp = log_probs[..., blank]
    blank_s, label_s = skew(blank_lp, NEG_INF), skew(label_lp, NEG_INF)  # (D, B, U+1)
    batch, width = tf.shape(blank_lp)[0], tf.shape(blank_lp)[2]
    alpha0 = tf.concat([tf.zeros([batch, 1]), tf.fill([batch, width - 1], NEG_INF)], axis=1)

    def step(prev, elems):
        b_lp, l_lp = elems
        from_label = tf.concat([tf.fill([batch, 1], NEG_INF), (prev + l_lp)[:, :-1]], axis=1)
        return logaddexp(prev + b_lp, from_label)

    alphas = tf.scan(step, (blank_s[:-1], label_s[:-1]), initializer=alpha0)
    alphas = tf.concat([alpha0[None], alphas], axis=0)  # (D, B, U+1)
    idx_b = tf.range(batch)
    final = tf.gather_nd(alphas, tf.stack([logit_lengths - 1 + label_lengths, idx_b,
                                           label_lengths], axis=1))
    last_blank = tf.gather_nd(blank_lp, tf.stack([idx_b, logit_lengths - 1, label_lengths],
                                                 axis=1))
    return -(final + last_blank)


def _checksum(grads):
    """Scalar that depends on every gradient element (keeps them computed, not exported)."""
    import tensorflow as tf
    return tf.add_n([tf.reduce_sum(tf.square(g)) for g in tf.nest.flatten(grads)])


def build(name, seed=0):
    """Returns (step_fn, inputs) for one implementation; step_fn(*inputs) = loss and grads."""
    import numpy as np
    import tensorflow as tf

    from tf_todm.losses import pruned_rnnt_loss_from_parts, rnnt_loss

    rng = np.random.default_rng(seed)
    gen = tf.random.Generator.from_seed(seed)  # float32 straight away: no float64 RSS peak
    b, t, u, v, j = FLAGS.batch, FLAGS.frames, FLAGS.labels, FLAGS.vocab, FLAGS.joiner_dim
    labels = tf.constant(rng.integers(1, v, size=(b, u)), tf.int32)
    logit_lengths = tf.constant(np.maximum(t - rng.integers(0, t // 10 + 1, size=b), 1), tf.int32)
    label_lengths = tf.constant(np.maximum(u - rng.integers(0, u // 10 + 1, size=b), 0), tf.int32)
    if name in ("exact_ours", "exact_naive"):
        logits = gen.normal((b, t, u + 1, v))
        loss_fn = rnnt_loss if name == "exact_ours" else naive_rnnt_loss

        @tf.function
        def step(logits):
            with tf.GradientTape() as tape:
                tape.watch(logits)
                loss = tf.reduce_sum(loss_fn(logits, labels, logit_lengths, label_lengths))
            return loss, _checksum(tape.gradient(loss, logits))

        return step, (logits,)

    enc = gen.normal((b, t, j))
    pred = gen.normal((b, u + 1, j))
    weight = gen.normal((j, v)) / np.sqrt(j)
    w_am = gen.normal((j, v)) / np.sqrt(j)
    w_lm = gen.normal((j, v)) / np.sqrt(j)

    @tf.function
    def step(enc, pred, weight):
        def join_fn(enc_part, pred_part):
            # tensordot = one 2-D matmul (as keras Dense does); `@` with a rank-2 weight would
            # batch the weight gradient into a [B*T*S, J, V] temporary.
            return tf.tensordot(tf.tanh(enc_part + pred_part), weight, axes=1)

        with tf.GradientTape() as tape:
            tape.watch([enc, pred, weight])
            if name == "joiner_exact":
                logits = join_fn(enc[:, :, None, :], pred[:, None, :, :])
                loss = tf.reduce_sum(rnnt_loss(logits, labels, logit_lengths, label_lengths))
            else:
                simple, pruned, _ = pruned_rnnt_loss_from_parts(
                    enc, pred, join_fn, tf.tensordot(enc, w_am, axes=1),
                    tf.tensordot(pred, w_lm, axes=1), labels, logit_lengths,
                    label_lengths, prune_range=FLAGS.prune_range)
                loss = tf.reduce_sum(0.5 * simple + pruned)
        return loss, _checksum(tape.gradient(loss, [enc, pred, weight]))

    return step, (enc, pred, weight)


def _run(step, inputs):
    import tensorflow as tf
    out = step(*inputs)
    tf.nest.map_structure(lambda x: x.numpy(), out)


def _status_kib(field):
    """A `Vm*` field of /proc/self/status in KiB (Linux), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_worker(name):
    """Print the peak RSS growth (MiB) of two forward+backward passes of one implementation.

    Building the inputs can itself peak high (random generation temporaries), so the peak
    counter is reset afterwards (Linux `clear_refs` 5) and growth is measured from the current
    RSS; elsewhere it falls back to the ru_maxrss high-water mark. The step returns only scalars
    (the gradients are reduced in-graph), so no numpy copy of a gradient is counted.
    """
    step, inputs = build(name)
    _run(step, inputs)  # trace, XLA-compile and allocate caches outside the measured window
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before, peak_field = _status_kib("VmRSS"), "VmHWM"
    except OSError:
        before, peak_field = None, None
    if before is None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _run(step, inputs)
    after = _status_kib(peak_field) if peak_field else None
    if after is None:
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"name": name, "peak_extra_mib": (after - before) / 1024.0}))


def measure_memory(name):
    argv = [sys.executable, "-m", "experiments.benchmark_loss", f"--worker={name}"]
    for flag in ("batch", "frames", "labels", "vocab", "joiner_dim", "prune_range"):
        argv.append(f"--{flag}={getattr(FLAGS, flag)}")
    out = subprocess.run(argv, capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_mib"]


def _ratio(num, den):
    """num / den rounded, or None when the denominator is too small to measure."""
    return round(num / den, 3) if den > 1.0 else None


def main(argv):
    del argv
    try:
        _check_flags()
    except BenchmarkFlagError as err:
        print(err)
        sys.exit(1)
    if FLAGS.worker:
        run_worker(FLAGS.worker)
        return
    steps = {name: build(name) for name in IMPLEMENTATIONS}
    values = {}
    for name, (step, inputs) in steps.items():  # trace + warm up
        loss, _ = step(*inputs)
        values[name] = float(loss)
    times = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(FLAGS.repeats):
        for name, (step, inputs) in steps.items():
            start = time.perf_counter()
            _run(step, inputs)
            times[name].append(time.perf_counter() - start)
    median_ms = {name: 1000 * statistics.median(ts) for name, ts in times.items()}
    memory = {name: measure_memory(name) for name in IMPLEMENTATIONS} if FLAGS.measure_memory \
        else {}
    result = {
        "shape": {"batch": FLAGS.batch, "frames": FLAGS.frames, "labels": FLAGS.labels,
                  "vocab": FLAGS.vocab, "joiner_dim": FLAGS.joiner_dim,
                  "prune_range": FLAGS.prune_range, "repeats": FLAGS.repeats},
        "median_ms": median_ms,
        "all_ms": {k: [1000 * t for t in v] for k, v in times.items()},
        "peak_extra_mib": memory,
        "summed_loss": values,
        "exact_speedup_vs_naive": median_ms["exact_naive"] / median_ms["exact_ours"],
        "pruned_speedup_vs_exact_with_joiner": median_ms["joiner_exact"]
        / median_ms["joiner_pruned"],
        "exact_loss_rel_diff_vs_naive": abs(values["exact_ours"] - values["exact_naive"])
        / abs(values["exact_naive"]),
    }
    if memory:
        result["exact_memory_ratio_ours_over_naive"] = _ratio(memory["exact_ours"],
                                                              memory["exact_naive"])
        result["pruned_memory_ratio_over_exact_with_joiner"] = _ratio(memory["joiner_pruned"],
                                                                      memory["joiner_exact"])
    print(f"{'implementation':<16}{'median ms':>12}{'peak extra MiB':>16}{'sum loss':>14}")
    for name in IMPLEMENTATIONS:
        mem = f"{memory[name]:.0f}" if memory else "-"
        print(f"{name:<16}{median_ms[name]:>12.1f}{mem:>16}{values[name]:>14.2f}")
    print(f"exact: ours is {result['exact_speedup_vs_naive']:.2f}x faster than naive"
          + (f", memory ratio {result['exact_memory_ratio_ours_over_naive']}" if memory
             else ""))
    print(f"with joiner: pruned is {result['pruned_speedup_vs_exact_with_joiner']:.2f}x faster"
          + (f", memory ratio {result['pruned_memory_ratio_over_exact_with_joiner']}"
             if memory else ""))
    if FLAGS.output_json:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
        with open(FLAGS.output_json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
