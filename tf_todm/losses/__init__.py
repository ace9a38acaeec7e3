"""tf_todm.losses."""
