"""What the model is fed: tf.data pipelines from the prepared TFDS datasets, and the feature cache."""
