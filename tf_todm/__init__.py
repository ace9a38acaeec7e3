"""tf_todm: train one elastic Conformer-Transducer supernet, deploy many on-device models."""

__version__ = "0.1.0"
