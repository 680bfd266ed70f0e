"""Runs one export the way a deployer would, with nothing of this package: plain TensorFlow for a
SavedModel, the TFLite interpreter, ONNX Runtime.

  python -I clean_check.py IMAGES.npy OUTPUTS.npz FORMAT EXPORT_PATH [FORMAT EXPORT_PATH ...]

`mammo_train.export` runs this file as a script in a fresh, isolated interpreter (`python -I`, so
neither PYTHONPATH nor the working directory is on sys.path), so a match with Keras proves the export
stands alone: no custom layer, no import of mammo_train or mammo_tfds is needed to serve it. It
therefore imports only numpy and the one runtime it checks, and says so in its output.
"""
import json
import sys

import numpy as np

BATCH = 32


def _batches(images):
  for start in range(0, len(images), BATCH):
    yield np.ascontiguousarray(images[start:start + BATCH])


def run_saved_model(path, images):
  import tensorflow as tf
  serve = tf.saved_model.load(path).signatures["serving_default"]
  for batch in _batches(images):
    yield {name: value.numpy() for name, value in serve(image=tf.constant(batch)).items()}


def run_tflite(path, images):
  import tensorflow as tf
  interpreter = tf.lite.Interpreter(model_path=path)
  runner = interpreter.get_signature_runner("serving_default")
  for batch in _batches(images):
    yield runner(image=batch)


def run_onnx(path, images):
  import onnxruntime
  session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  names = [output.name for output in session.get_outputs()]
  for batch in _batches(images):
    yield dict(zip(names, session.run(names, {"image": batch})))


RUNNERS = {"saved_model": run_saved_model, "tflite": run_tflite, "onnx": run_onnx}


def main(argv):
  """Writes output NAME of the i-th export as array "i.NAME" of OUTPUTS.npz."""
  images_path, outputs_path, exports = argv[1], argv[2], argv[3:]
  images = np.load(images_path, mmap_mode="r")  # read batch by batch, never whole
  outputs = {}
  for index, (kind, path) in enumerate(zip(exports[::2], exports[1::2])):
    parts = list(RUNNERS[kind](path, images))
    outputs.update({f"{index}.{name}": np.concatenate([np.asarray(part[name]) for part in parts])
                    for name in parts[0]})
  np.savez(outputs_path, **outputs)
  project = sorted(name for name in sys.modules if name.split(".")[0] in ("mammo_train", "mammo_tfds"))
  print(json.dumps({"outputs": sorted(outputs), "project_modules_imported": project}))


if __name__ == "__main__":
  main(sys.argv)
