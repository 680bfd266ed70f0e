"""The classifiers: the small cnn and Keras applications backbones.

Every model takes the stored uint8 image [S, S, 1] and does its own
preprocessing (grayscale to three channels, the backbone's scaling), so a
saved model predicts on raw images with no outside code and loads with plain
`keras.models.load_model` (only built-in layers are used).

A backbone model is `image -> preprocess -> backbone (pooled features) ->
dropout -> output`, the backbone one nested layer named "backbone" that is
always called with training=False (BatchNorm keeps its ImageNet statistics).
A frozen backbone computes the same features for the same image every epoch;
keeping it one layer lets those features be computed once and only the head
trained on them, instead of rerunning the backbone each epoch.
"""
import copy
import os
import socket

import keras

from mammo_train.errors import ConfigError

# Keras applications constructor, its preprocessing ("caffe": BGR mean
# subtraction, "tf": scale to [-1, 1]), smallest input side, notop ImageNet file.
BACKBONES = {
    "resnet50": (keras.applications.ResNet50, "caffe", 32,
                 "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg16": (keras.applications.VGG16, "caffe", 32,
              "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "inceptionv3": (keras.applications.InceptionV3, "tf", 75,
                    "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
}
# Filters of the cnn's conv blocks.
CNN_FILTERS = (16, 32, 64, 128)
WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# ImageNet channel means in the BGR order caffe preprocessing subtracts them in;
# the three channels are the same gray image, so the RGB -> BGR swap is a no-op.
CAFFE_MEANS = (103.939, 116.779, 123.68)


def _output(features, classes: int, dropout: float, l2: float):
  """Dropout and the output layer: one sigmoid unit for two classes, else a softmax.
  Always float32, so mixed precision never rounds the probabilities."""
  x = keras.layers.Dropout(dropout, name="dropout")(features)
  return keras.layers.Dense(
      1 if classes == 2 else classes, activation="sigmoid" if classes == 2 else "softmax",
      kernel_regularizer=keras.regularizers.L2(l2) if l2 else None, dtype="float32", name="output")(x)


def is_binary(outputs_width: int) -> bool:
  """Whether a model with this many outputs is a binary (benign / malignant) classifier: one sigmoid
  unit (`_output`), or two softmax units (older or foreign models)."""
  return outputs_width in (1, 2)


def p_malignant(outputs):
  """P(malignant) from a binary classifier's outputs [N, 1] or [N, 2]: the last column.

  The one place the output layer is read: evaluation, prediction and every
  export go through it. Works on NumPy arrays and on tensors of any backend.
  """
  if not is_binary(outputs.shape[-1]):
    raise ValueError(f"outputs of shape {tuple(outputs.shape)} are not a binary classifier's ([N, 1] or [N, 2])")
  return outputs[:, -1]


def cnn(image_size: int, classes: int, dropout: float, l2: float) -> keras.Model:
  """A small network trained from scratch: conv blocks, a dense layer, the output.

  The original work's network has two conv blocks, whose receptive field
  (~16 px) is about one lesion. Four narrow conv-BatchNorm-ReLU-pool blocks
  see ~46 px, lesion and surroundings, for fewer FLOPs: on synthetic/600 at
  128 px, 40 epochs, two blocks (32, 64) reached validation / test AUC
  0.91 / 0.74, these four 0.99 / 0.99, at two thirds of the step time.
  Global max pooling keeps the dense layer small at any image size and
  answers to one small lesion anywhere in the breast. BatchNorm momentum
  0.9, not Keras' 0.99: with 0.99 the moving averages trailed the weights so
  far that on synthetic (128 px, 14 steps an epoch) validation AUC stayed at
  chance for 30 of 40 epochs while training AUC passed 0.9; with 0.9 it
  tracks training from the second epoch.
  """
  regularizer = keras.regularizers.L2(l2) if l2 else None
  inputs = keras.Input((image_size, image_size, 1), dtype="uint8", name="image")
  x = keras.layers.Rescaling(1 / 255, name="preprocess")(inputs)
  for block, filters in enumerate(CNN_FILTERS, start=1):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_regularizer=regularizer,
                            name=f"block{block}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn")(x)
    x = keras.layers.ReLU(name=f"block{block}_relu")(x)
    x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
  x = keras.layers.GlobalMaxPooling2D(name="pool")(x)
  x = keras.layers.Dense(64, activation="relu", kernel_regularizer=regularizer, name="dense")(x)
  return keras.Model(inputs, _output(x, classes, dropout, l2), name="cnn")


def imagenet_weights(name: str) -> str:
  """The notop ImageNet weights of backbone `name`: 'imagenet' when Keras has
  them cached or can download them, else a ConfigError that says how to pass
  a local copy (fails at once rather than waiting on a download timeout)."""
  path = BACKBONES[name][3]
  cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models",
                       os.path.basename(path))
  if os.path.isfile(cache):
    return "imagenet"
  try:
    socket.create_connection(("storage.googleapis.com", 443), timeout=3).close()
    return "imagenet"
  except OSError:
    raise ConfigError(
        f"--weights=imagenet: the {name} ImageNet weights are not cached at {cache} and cannot be "
        f"downloaded (offline): fetch {WEIGHTS_URL}{path} elsewhere, then pass "
        f"--weights=/path/to/{os.path.basename(path)} (or copy it to {cache})") from None


def backbone_model(name: str, image_size: int, classes: int, weights: str, dropout: float,
                   l2: float) -> keras.Model:
  """A Keras applications backbone with average pooling, dropout and the output.

  Args:
    weights: 'imagenet', 'none' or the path of a notop .h5 weights file.
  """
  constructor, preprocessing, min_size, _ = BACKBONES[name]
  if image_size < min_size:
    raise ConfigError(f"--model={name} needs --image_size of at least {min_size}, got {image_size}")
  if weights == "imagenet":
    weights = imagenet_weights(name)
  inputs = keras.Input((image_size, image_size, 1), dtype="uint8", name="image")
  x = keras.layers.Concatenate(name="grayscale_to_rgb")([inputs, inputs, inputs])
  if preprocessing == "caffe":
    x = keras.layers.Rescaling(1.0, offset=[-mean for mean in CAFFE_MEANS], name="preprocess")(x)
  else:
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(x)
  backbone = constructor(include_top=False, weights=None if weights == "none" else weights,
                         input_shape=(image_size, image_size, 3), pooling="avg", name="backbone")
  features = backbone(x, training=False)
  return keras.Model(inputs, _output(features, classes, dropout, l2), name=name)


def compile(model: keras.Model, classes: int, learning_rate: float):  # pylint: disable=redefined-builtin
  """Adam, the loss that matches the output (sigmoid or softmax), and the metrics every run logs."""
  binary = classes == 2
  model.compile(
      optimizer=keras.optimizers.Adam(learning_rate),
      loss=keras.losses.BinaryCrossentropy() if binary else keras.losses.CategoricalCrossentropy(),
      metrics=[keras.metrics.AUC(name="auc"), keras.metrics.Precision(name="precision"),
               keras.metrics.Recall(name="recall"),
               keras.metrics.BinaryAccuracy(name="accuracy") if binary
               else keras.metrics.CategoricalAccuracy(name="accuracy")])


def compute_policy(model: keras.Model) -> str:
  """The dtype policy `model` computes in: "float32", or the mixed policy it was trained under.

  A saved model keeps its layers' policies, so a model trained under
  mixed_bfloat16 still computes in bfloat16 when loaded in a float32 process.
  """
  for layer in _all_layers(model):
    if layer.dtype_policy.compute_dtype in ("bfloat16", "float16"):
      return layer.dtype_policy.name
  return "float32"


def _float32_config(config):
  """The model config with every mixed-precision layer policy replaced by float32."""
  if isinstance(config, dict):
    if config.get("class_name") == "DTypePolicy" and config.get("config", {}).get("name", "").startswith("mixed_"):
      return "float32"
    return {key: _float32_config(value) for key, value in config.items()}
  if isinstance(config, list):
    return [_float32_config(value) for value in config]
  return config


def float32_model(model: keras.Model) -> keras.Model:
  """`model` with float32 compute in every layer and the same weights (itself if it already is)."""
  if compute_policy(model) == "float32":
    return model
  rebuilt = model.__class__.from_config(_float32_config(copy.deepcopy(model.get_config())))
  rebuilt.set_weights(model.get_weights())
  return rebuilt


def _all_layers(model: keras.Model):
  for layer in model.layers:
    yield layer
    if isinstance(layer, keras.Model):
      yield from _all_layers(layer)


def has_backbone(model: keras.Model) -> bool:
  return any(layer.name == "backbone" for layer in model.layers)


def split_head(model: keras.Model):
  """(extractor, head) of a backbone model: image -> pooled backbone features, and features -> output.

  Both reuse the model's own layers (and so its weights): the extractor is
  the model up to the backbone's pooled output, the head is the layers after
  it called on a features input. Training the head trains the model, which is
  what the feature cache relies on.
  """
  features = model.get_layer("dropout").input
  extractor = keras.Model(model.input, features, name=f"{model.name}_features")
  head_input = keras.Input(features.shape[1:], name="features")
  x = head_input
  for layer in model.layers[[layer.name for layer in model.layers].index("dropout"):]:
    x = layer(x)
  return extractor, keras.Model(head_input, x, name=f"{model.name}_head")


def build(name: str, image_size: int, classes: int, weights: str, dropout: float, l2: float) -> keras.Model:
  if name == "cnn":
    return cnn(image_size, classes, dropout, l2)
  return backbone_model(name, image_size, classes, weights, dropout, l2)


def set_fine_tune(model: keras.Model, layers: int | None):
  """Trains the top `layers` layers of the model's backbone and freezes the rest.

  0 freezes the whole backbone; None trains all of it. BatchNorm layers stay
  frozen either way (their statistics are ImageNet's, and batches are small).
  Models without a backbone (the cnn) train every layer.
  """
  if not has_backbone(model):
    return
  backbone = model.get_layer("backbone")
  trainable = [layer for layer in backbone.layers if not isinstance(layer, keras.layers.InputLayer)]
  if layers is None:
    layers = len(trainable)
  if layers > len(trainable):
    raise ConfigError(f"--fine_tune_layers={layers} is more than the {len(trainable)} layers of the "
                      f"{model.name} backbone")
  backbone.trainable = layers > 0
  for index, layer in enumerate(trainable):
    layer.trainable = (index >= len(trainable) - layers
                       and not isinstance(layer, keras.layers.BatchNormalization))


def load(path: str, classes: int, *, flag: str, image_size: int | None = None,
         name: str | None = None) -> keras.Model:
  """A saved .keras model, checked to fit the dataset it is about to see.

  Args:
    path: the model file.
    classes: the dataset's number of classes (a sigmoid unit for two).
    flag: the flag that named the file, for the error message.
    image_size: the side this run feeds it, if fixed (the trainer's); else any square side.
    name: the --model it must be (cnn or a backbone), if any.

  Raises:
    ConfigError: unreadable, or it does not fit; one line naming the file and what is wrong.
  """
  try:
    model = keras.models.load_model(path)
  except Exception as error:  # Keras raises many types for a missing, truncated or foreign file
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    raise ConfigError(f"--{flag}={path}: not a readable Keras model ({type(error).__name__}: {reason})") from None
  shape = tuple(model.input_shape[1:])  # input_shape: a loaded Sequential has no .input until called
  if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 1:
    raise ConfigError(f"--{flag}={path} takes inputs of shape {shape}, not square one-channel images")
  if image_size is not None and shape[0] != image_size:
    raise ConfigError(f"--{flag}={path} takes {shape[0]}x{shape[0]} images, this run gives "
                      f"{image_size}x{image_size}: pass --image_size={shape[0]}")
  units = model.output_shape[-1]
  if units != (1 if classes == 2 else classes):
    raise ConfigError(f"--{flag}={path} has {units} output units, for {2 if units == 1 else units} classes; "
                      f"this dataset has {classes}")
  if name is not None and (name == "cnn") == has_backbone(model):
    raise ConfigError(f"--{flag}={path} is a {model.name} model, not --model={name}")
  return model
