"""tf_todm.export."""
