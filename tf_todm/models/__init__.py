"""tf_todm.models."""
