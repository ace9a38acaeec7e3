"""Installable package for tf_todm (library in tf_todm/, programs in experiments/)."""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "tensorflow==2.21.0",  # tensorflow-text depends on "tensorflow"; the Linux wheel is CPU-only without [and-cuda]
    "tensorflow-text>=2.21,<2.22",
    "tensorflow-model-optimization>=0.8.1",
    "tf_keras>=2.21,<2.22",
    "keras>=3.10",
    "keras-nlp>=0.32",
    "sentencepiece>=0.2",
    "jiwer>=4",
    "absl-py>=1.2",  # tensorflow-model-optimization pins absl-py~=1.2
    "ai-edge-litert>=2.3",
    "tflite-micro",
    "soundfile>=0.12",
    "numpy",
    "scipy",
    "matplotlib",
    "tensorboard>=2.21,<2.22",  # tf.summary writers (TensorBoard logs of every run)
]

EXTRAS_REQUIRE = {
    "dev": ["pytest>=8", "pytest-timeout", "pytest-xdist", "hypothesis>=6"],
}

setup(
    name="tf_todm",
    version="0.1.0",
    description="Train Once, Deploy Many: elastic Conformer-Transducer supernets to on-device TFLite.",
    packages=find_packages(include=["tf_todm", "tf_todm.*", "experiments", "experiments.*"]),
    package_data={"experiments": ["flags/*.cfg", "*.json"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
