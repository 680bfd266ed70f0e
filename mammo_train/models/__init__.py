"""Model definitions, heads and compile: Keras only (no TensorFlow import), so they run on any Keras backend."""
