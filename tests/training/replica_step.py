"""Helper program for test_distributed.py: one training step with N replicas; saves weights.

    python tests/training/replica_step.py <num_replicas> <out.npz>
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main(num_replicas: int, out_path: str) -> None:
    from tf_todm.training.trainer import make_strategy
    strategy = make_strategy("mirrored" if num_replicas > 1 else "default", num_replicas)
    import numpy as np
    import tensorflow as tf
    from tf_todm.models.config import TransducerConfig
    from tf_todm.training.config import TrainConfig
    from tf_todm.training.task import TransducerTask
    from tf_todm.training.trainer import Trainer

    model = TransducerConfig(input_dim=13, model_dim=12, num_blocks=1, ff_dim=18, num_heads=2,
                             conv_dim=10, conv_kernel_size=3, subsampling_channels=4,
                             predictor_dim=10, joiner_dim=14, vocab_size=7, dropout=0.0)
    config = TrainConfig(loss="exact", supernet=False, batch_size=4, optimizer=sys.argv[3],
                         base_lr=0.05, warmup_batches=0, clipping_scale=0.0, seed=3)
    task = TransducerTask(model, config)
    trainer = Trainer(task, config, os.path.dirname(out_path) + f"/run{num_replicas}", strategy)
    rng = np.random.default_rng(0)
    # Unequal lengths, so a per-replica mean (instead of the global one) would change the step.
    batch = {"features": rng.normal(size=(4, 29, 13)).astype(np.float32),
             "feature_lengths": np.array([29, 11, 21, 9], np.int32),
             "labels": rng.integers(1, 7, size=(4, 5)).astype(np.int32),
             "label_lengths": np.array([5, 1, 4, 2], np.int32),
             "text": np.array([b"a", b"b", b"c", b"d"])}
    per = 4 // num_replicas

    def shard(ctx):
        i = ctx.replica_id_in_sync_group
        return {k: tf.constant(v[i * per:(i + 1) * per]) for k, v in batch.items()}

    dist_batch = (strategy.experimental_distribute_values_from_function(shard)
                  if num_replicas > 1 else {k: tf.constant(v) for k, v in batch.items()})
    init = {f"i{i}": v.numpy() for i, v in enumerate(trainer.model.trainable_variables)}
    scalars, applied = trainer.train_step(dist_batch, task.subnets_for_step(0))
    assert applied
    np.savez(out_path, loss=scalars["loss"], **init,
             **{f"w{i}": v.numpy() for i, v in enumerate(trainer.model.trainable_variables)})


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
