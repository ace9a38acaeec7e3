"""Shared fixtures. Keep TensorFlow on the 2 cores of the CI machine and quiet."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
