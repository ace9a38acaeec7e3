"""Train one Conformer-Transducer alone (no supernet): the baseline for train-once-deploy-many.

    python -m experiments.train_single --flagfile=experiments/flags/single_small.cfg \
        --out_dir=artifacts/single_small [--subnet='{"num_blocks": 2, ...}']

Same flags as `experiments.train_supernet`; `--subnet` trains that architecture of the `--model`
supernet's search space on its own (the benchmark's "trained alone" baseline).
"""

from absl import app

from experiments.train_supernet import main_for

if __name__ == "__main__":
    app.run(main_for(False))
