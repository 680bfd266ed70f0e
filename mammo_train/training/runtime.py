"""One run's set-up, shared by every command: dataset, seeds, precision, strategy, model, pipelines.

The trainer, the tuner, evaluation, baselines, prediction and export each
start the same way: a dataset name becomes a prepared builder, seeds and
determinism are set, the precision policy and the distribution strategy are
chosen for this machine, the global batch follows from the replicas, and a
model is built, loaded or fine-tuned and compiled inside the strategy's
scope. Doing it here, once, is what keeps a tuning trial, a training run and
a prediction on the same footing.
"""
import dataclasses
import os
import tempfile

import keras
import tensorflow as tf

from mammo_train import config
from mammo_train.inference import runtimes
from mammo_train.inputs import data, feature_cache
from mammo_train.models import classifiers
from mammo_train.training import multiworker

# On CPU, mixed_bfloat16 only pays where the hardware has bfloat16 arithmetic
# (AVX512-BF16 / AMX); elsewhere it is emulated and slower than float32.
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bfloat16() -> bool:
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
  except OSError:
    return False
  return any(flag in flags for flag in _BF16_CPU_FLAGS)


def resolve_precision(choice: str) -> str:
  """The Keras dtype policy for --precision (auto: the fastest correct one here).

  mixed_float16 on a GPU; on CPU, mixed_float16 is 3-5x slower than float32
  (emulated), and mixed_bfloat16 is faster only with hardware bfloat16.
  """
  if choice != "auto":
    return choice
  if tf.config.list_physical_devices("GPU"):
    return "mixed_float16"
  return "mixed_bfloat16" if cpu_has_bfloat16() else "float32"


def make_strategy(choice: str) -> tf.distribute.Strategy:
  """--strategy: mirrored over GPUs (or the logical CPUs when there is no GPU), or multi-worker.

  multiworker reads the cluster from TF_CONFIG; it must be created before
  anything else starts TF's runtime, which is why `set_up` makes it first.
  """
  if choice == "multiworker":
    if "TF_CONFIG" not in os.environ:
      raise config.ConfigError("--strategy=multiworker needs the cluster in the TF_CONFIG environment "
                               "variable (README: training across machines)")
    return multiworker.strategy()
  gpus = tf.config.list_logical_devices("GPU")
  if choice == "mirrored":
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
  if choice == "auto" and len(gpus) > 1:
    return tf.distribute.MirroredStrategy()
  return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files: always, except on the non-chief workers of a cluster."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  if resolver.task_type == "chief":
    return True
  return (resolver.task_type == "worker" and resolver.task_id == 0
          and "chief" not in resolver.cluster_spec().as_dict())


@dataclasses.dataclass
class Run:
  """What every command knows once it is set up."""
  builder: object  # the prepared tfds builder
  image_size: int
  classes: int
  precision: str
  strategy: tf.distribute.Strategy
  global_batch: int
  chief: bool  # this process writes the workdir (a cluster's other workers write to a scratch folder)
  backbone_runtime: str | None = None  # who runs the feature cache's backbone pass (resolved), if one runs

  def describe(self) -> dict:
    return {"precision": self.precision, "strategy": type(self.strategy).__name__,
            "replicas": self.strategy.num_replicas_in_sync, "global_batch_size": self.global_batch,
            "backbone_runtime": self.backbone_runtime}

  def output_dir(self, workdir: str) -> str:
    """The workdir on the chief; a private scratch folder on any other worker, so only the chief writes."""
    if self.chief:
      return workdir
    return tempfile.mkdtemp(prefix="mammo-worker-")


def set_up(dataset: str, data_dir: str | None, *, batch_size: int, seed: int, image_size: int | None = None,
           precision: str = "float32", strategy: str = "default", deterministic: bool = False) -> Run:
  """Prepares a command to run: strategy first (multi-worker needs it before TF starts), then the
  dataset, seeds, precision policy and global batch.

  Raises:
    config.ConfigError, data.DatasetNotBuiltError: one-line usage errors.
  """
  distribution = make_strategy(strategy)
  builder = data.load_builder(dataset, data_dir)
  keras.utils.set_random_seed(seed)
  if deterministic:
    tf.config.experimental.enable_op_determinism()
  policy = resolve_precision(precision)
  keras.mixed_precision.set_global_policy(policy)
  return Run(builder=builder, image_size=image_size or builder.info.features["image"].shape[0],
             classes=data.num_classes(builder), precision=policy, strategy=distribution,
             global_batch=batch_size * distribution.num_replicas_in_sync, chief=is_chief(distribution))


def set_up_training(cfg: config.Train) -> Run:
  run = set_up(cfg.dataset, cfg.data_dir, batch_size=cfg.batch_size, seed=cfg.seed, image_size=cfg.image_size,
               precision=cfg.precision, strategy=cfg.strategy, deterministic=cfg.deterministic)
  require_splits(run.builder, data.SPLITS, "training (train), model selection (validation) and the final "
                 "evaluation (test)")
  if uses_feature_cache(cfg):
    run.backbone_runtime = runtimes.resolve(cfg.runtime, run.precision)
  return run


def require_splits(builder, splits, why: str):
  """A dataset without the splits a command needs is a usage error, named, not a traceback later."""
  missing = [split for split in splits if split not in builder.info.splits]
  config.check(not missing, f"dataset {builder.info.full_name} has no {' or '.join(missing)} split, which "
               f"{why} needs: it has {', '.join(builder.info.splits)}")


def build_model(run: Run, cfg: config.Train, *, dropout: float | None = None, l2: float | None = None,
                learning_rate: float | None = None) -> keras.Model:
  """The run's model, built (or loaded with --init_from), fine-tune set and compiled in the strategy's scope.

  dropout, l2 and learning_rate override the config's (a tuning trial's values).
  """
  with run.strategy.scope():  # variables are made per replica
    if cfg.init_from:
      model = classifiers.load(cfg.init_from, run.classes, flag="init_from", image_size=run.image_size,
                          name=cfg.model)
    else:
      model = classifiers.build(cfg.model, run.image_size, run.classes, cfg.weights,
                           cfg.dropout if dropout is None else dropout, cfg.l2 if l2 is None else l2)
    classifiers.set_fine_tune(model, cfg.fine_tune_layers)
    classifiers.compile(model, run.classes, cfg.learning_rate if learning_rate is None else learning_rate)
  return model


def uses_feature_cache(cfg: config.Train) -> bool:
  return cfg.feature_cache and cfg.frozen_backbone


def training_inputs(run: Run, cfg: config.Train, model: keras.Model, cache_root: str | None = None):
  """(train batches, validation batches) for `model`: images, or cached backbone features.

  With a frozen backbone and the feature cache on, the backbone's features are
  computed once (or reused from `cache_root`) and the batches are features,
  to train the head (`models.split_head`) on. On a cluster each worker reads,
  and caches features of, only its share of the training split
  (`training.multiworker`); class weights are per-example weights in the
  batches (`data.fit_batches`), the same on every worker.
  """
  cluster = multiworker.is_multiworker(run.strategy)
  share = data.Share(*multiworker.input_share(run.strategy)) if cluster else data.WHOLE
  class_weight = (data.balancing_class_weights(data.class_counts(run.builder, cfg.partition.train))
                  if cfg.class_weights else None)
  if uses_feature_cache(cfg):
    extractor, _ = classifiers.split_head(model)
    folder = feature_cache.compute(cfg.feature_cache_root or cache_root, run.builder, extractor, run.image_size,
                                   run.global_batch, cfg.augmentation, cfg.cache_views, cfg.seed,
                                   runtime=run.backbone_runtime, partition=cfg.partition, share=share)
    def train(batch_size):
      return feature_cache.train_batches(folder, run.classes, batch_size, cfg.oversample, cfg.seed, class_weight,
                                         cfg.partition.train)
    validation = feature_cache.validation_batches(folder, run.classes, run.global_batch, cfg.partition.validation)
  else:
    def train(batch_size):
      return data.train_batches(run.builder, image_size=run.image_size, batch_size=batch_size,
                                augmentation=cfg.augmentation, oversample=cfg.oversample, cache=cfg.cache,
                                seed=cfg.seed, deterministic=cfg.deterministic, split=cfg.partition.train,
                                share=share, class_weight=class_weight)
    validation = data.validation_batches(run.builder, image_size=run.image_size,
                                         global_batch_size=run.global_batch, cache=cfg.cache,
                                         split=cfg.partition.validation)
  if cluster:
    return (multiworker.per_worker_batches(run.strategy, (share.index, share.count), run.global_batch, train),
            multiworker.shard_by_data(validation))
  return train(run.global_batch), validation


def trained_part(run: Run, cfg: config.Train, model: keras.Model, learning_rate: float) -> keras.Model:
  """What `fit` trains: the head alone on cached features (compiled like the model), else the model."""
  if not uses_feature_cache(cfg):
    return model
  with run.strategy.scope():
    _, head = classifiers.split_head(model)
    classifiers.compile(head, run.classes, learning_rate)
  return head


def fit_arguments(run: Run, cfg: config.Train) -> dict:
  """The `fit` arguments the trainer and the tuner share (class weights are in the batches: `training_inputs`)."""
  return {"steps_per_epoch": data.steps_per_epoch(run.builder, run.global_batch, cfg.partition.train),
          "shuffle": False}
