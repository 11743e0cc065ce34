"""Training pipeline: data -> fine-tune (PyTorch, HF Trainer) -> evaluate -> export (TF, TFLite)."""

import os

# transformers 4.57's TensorFlow classes need Keras 2 (tf-keras); set before TensorFlow is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
