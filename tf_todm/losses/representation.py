"""Representation-level distillation: frame MSE and a CLIP-style symmetric frame InfoNCE.

The teacher side is treated as a constant target (no gradient), as in in-place distillation.
"""

import tensorflow as tf

from tf_todm.losses.rnnt import check_rank


def frame_mask(lengths, frames, dtype=tf.float32):
    """int32 [B] -> [B, frames] 1.0 on valid frames."""
    return tf.sequence_mask(lengths, frames, dtype=dtype)


def mse_representation_loss(student, teacher, lengths):
    """Mean squared error per utterance over its valid frames and all D dims.

    Args:
      student, teacher: float32 [B, T, D]; lengths: int32 [B].

    Returns:
      float32 [B] (0 for an utterance with length 0).
    """
    student = tf.cast(student, tf.float32)
    teacher = tf.stop_gradient(tf.cast(teacher, tf.float32))
    check_rank("student", student, 3, "mse_representation_loss")
    check_rank("teacher", teacher, 3, "mse_representation_loss")
    mask = frame_mask(lengths, tf.shape(student)[1])
    per_frame = tf.reduce_mean(tf.square(student - teacher), axis=-1)  # (B, T)
    return tf.reduce_sum(per_frame * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


def infonce_frame_loss(student, teacher, lengths, temperature=0.1, max_frames=512, seed=None):
    """Symmetric InfoNCE over the valid frames of the whole batch (CLIP-style).

    The positive of student frame i is teacher frame i; every other sampled valid frame of the
    batch (other times and other utterances) is a negative. Both sides are L2-normalised and the
    similarity is divided by `temperature`. At most `max_frames` frames are sampled uniformly
    without replacement, which bounds the [N, N] similarity matrix.

    Args:
      student, teacher: float32 [B, T, D]; lengths: int32 [B].
      temperature: python float.
      max_frames: python int, cap on the number of frames N.
      seed: optional op seed for the frame sampling.

    Returns:
      float32 scalar: mean of the student->teacher and teacher->student cross-entropies.
    """
    student = tf.cast(student, tf.float32)
    teacher = tf.stop_gradient(tf.cast(teacher, tf.float32))
    check_rank("student", student, 3, "infonce_frame_loss")
    check_rank("teacher", teacher, 3, "infonce_frame_loss")
    valid = tf.sequence_mask(lengths, tf.shape(student)[1])
    s = tf.boolean_mask(student, valid)  # (N, D)
    t = tf.boolean_mask(teacher, valid)
    count = tf.shape(s)[0]
    pick = tf.random.shuffle(tf.range(count), seed=seed)[: tf.minimum(count, max_frames)]
    pick = tf.sort(pick)
    s = tf.math.l2_normalize(tf.gather(s, pick), axis=-1)
    t = tf.math.l2_normalize(tf.gather(t, pick), axis=-1)
    sim = tf.matmul(s, t, transpose_b=True) / temperature  # (N, N)
    targets = tf.range(tf.shape(sim)[0])
    s_to_t = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=sim)
    t_to_s = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets,
                                                            logits=tf.transpose(sim))
    return 0.5 * (tf.reduce_mean(s_to_t) + tf.reduce_mean(t_to_s))
