"""Training curves of several runs side by side, from their TensorBoard event files.

    python -m experiments.compare_runs --run_dirs=artifacts/single_45min_try2,artifacts/single_45min \
        --names=conv2d_layernorm,stack_batchnorm --output_json=artifacts/compare/single_45min.json

Writes {"window", "tags", "runs": {name: {"run_dir", "last_step", "curves": {tag: [{"step", "mean",
"count"}]}}}} with the mean of each scalar over consecutive windows of `--window` steps (the step
given is the window's last step), and a PNG (one panel per tag) next to the JSON. Runs trained with
the same seed and batch settings read the same batches in the same order, so their windows compare
like for like. A step logged twice (a resumed run) keeps its last value.
"""

from __future__ import annotations

import glob
import json
import os

from absl import app, flags

flags.DEFINE_list("run_dirs", None, "Run folders (each with a tb/ folder of event files).")
flags.DEFINE_list("names", None, "A short name per run (default: the folder names).")
flags.DEFINE_list("tags", ["model/ctc", "model/rnnt"], "Scalar tags to compare.")
flags.DEFINE_integer("window", 100, "Steps per averaging window.")
flags.DEFINE_string("output_json", None, "Result file (a .png of the same name is written too).")
FLAGS = flags.FLAGS


def read_scalars(run_dir: str, tags) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} from every event file under `run_dir/tb` (later files win)."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    files = sorted(glob.glob(os.path.join(run_dir, "tb", "**", "events.out.tfevents.*"), recursive=True))
    if not files:
        raise ValueError(f"{run_dir}/tb: no TensorBoard event files")
    scalars: dict[str, dict[int, float]] = {tag: {} for tag in tags}
    for path in files:
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag in scalars:
                    number = (float(tf.make_ndarray(value.tensor)) if value.HasField("tensor")
                              else float(value.simple_value))
                    scalars[value.tag][int(event.step)] = number
    return scalars


def window_means(points: dict[int, float], window: int) -> list[dict]:
    """Means over steps (k*window, (k+1)*window]; [{"step": (k+1)*window, "mean", "count"}]."""
    buckets: dict[int, list[float]] = {}
    for step, value in points.items():
        buckets.setdefault((step - 1) // window, []).append(value)
    return [{"step": (k + 1) * window, "mean": sum(v) / len(v), "count": len(v)}
            for k, v in sorted(buckets.items())]


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = result["tags"]
    fig, axes = plt.subplots(1, len(tags), figsize=(6 * len(tags), 4), squeeze=False)
    for ax, tag in zip(axes[0], tags):
        for name, run in result["runs"].items():
            curve = run["curves"][tag]
            ax.plot([p["step"] for p in curve], [p["mean"] for p in curve], label=name)
        ax.set_title(f"{tag} ({result['window']}-step means)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss per utterance")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.run_dirs or not FLAGS.output_json:
        raise app.UsageError("--run_dirs and --output_json are required")
    names = FLAGS.names or [os.path.basename(os.path.normpath(d)) for d in FLAGS.run_dirs]
    if len(names) != len(FLAGS.run_dirs):
        raise app.UsageError(f"--names has {len(names)} entries for {len(FLAGS.run_dirs)} --run_dirs")
    result = {"window": FLAGS.window, "tags": list(FLAGS.tags), "runs": {}}
    for name, run_dir in zip(names, FLAGS.run_dirs):
        scalars = read_scalars(run_dir, FLAGS.tags)
        steps = [s for points in scalars.values() for s in points]
        result["runs"][name] = {"run_dir": run_dir, "last_step": max(steps) if steps else 0,
                                "curves": {tag: window_means(points, FLAGS.window) for tag, points in scalars.items()}}
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output_json)), exist_ok=True)
    with open(FLAGS.output_json, "w") as f:
        json.dump(result, f, indent=1)
    plot(result, os.path.splitext(FLAGS.output_json)[0] + ".png")
    print(f"wrote {FLAGS.output_json}")


if __name__ == "__main__":
    app.run(main)
