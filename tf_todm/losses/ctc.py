"""CTC loss for the optional CTC head (thin wrapper over `tf.nn.ctc_loss`)."""

import tensorflow as tf

from tf_todm.constants import BLANK_ID
from tf_todm.losses.rnnt import check_rank


def ctc_loss(logits, labels, logit_lengths, label_lengths, blank=BLANK_ID):
    """CTC negative log-likelihood.

    Args:
      logits: float32 [B, T, V] unnormalised (batch-major).
      labels: int32 [B, U] dense, padded; never `blank` in the valid part.
      logit_lengths, label_lengths: int32 [B].
      blank: blank id.

    Returns:
      float32 [B] NLL (inf when an utterance is too short for its labels, as in TF).
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    check_rank("logits", logits, 3, "ctc_loss")
    check_rank("labels", labels, 2, "ctc_loss")
    return tf.nn.ctc_loss(
        labels=labels,
        logits=logits,
        label_length=tf.cast(label_lengths, tf.int32),
        logit_length=tf.cast(logit_lengths, tf.int32),
        logits_time_major=False,
        blank_index=blank,
    )
