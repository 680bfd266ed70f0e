"""TensorFlow Datasets builders for public mammography collections.

Builders live one folder per dataset (TFDS layout); the code they share lives
here once: `sources` reads a source file, `imaging` turns its pixels into the
stored image, `splits` assigns patients to splits, `features` is the schema.
This package never imports Keras.
"""
