"""tf_todm.search."""
