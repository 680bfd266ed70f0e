"""Training across machines: tf.distribute.MultiWorkerMirroredStrategy under Keras 3.

Every worker runs the same command with the same --workdir on shared
storage, its place in the cluster given by the standard TF_CONFIG variable.
What this needs beyond creating the strategy, each found by running two
workers on one machine (TF 2.21, Keras 3.15):

- Keras 3's TensorFlow trainer cannot start `fit` under this strategy
  (keras-team/keras#20585): it reduces a whole input batch across workers to
  learn its shapes, and reduces scalar logs along an axis they do not have.
  `patch_keras` replaces those two private functions with ones that take
  this worker's batch and reduce scalars without an axis; it refuses to run
  on a Keras whose internals it does not know, rather than train wrongly.
- Input is sharded by DATA, not by FILE: a TFDS split has few large shards,
  often fewer than workers, and FILE (and AUTO, which tries FILE first for
  TFDS's file lists) then fails at the first batch. With DATA every worker
  reads the same stream and keeps its share, which is a partition of the
  stream only if every worker makes the same stream: the training pipeline
  is made deterministic, with the same seed on every worker.
- Keras callbacks have no notion of a chief: the chief alone writes models,
  logs, history, reports and the feature cache; the other workers write to
  a scratch folder and resume from the chief's backup (their weights are
  the chief's, kept equal by the all-reduce).
"""
import tensorflow as tf

KNOWN_KERAS = ("3.15.",)  # the Keras whose TensorFlow trainer `patch_keras` was checked against


def patch_keras():
  """Makes Keras 3's `fit` work under MultiWorkerMirroredStrategy (see the module docstring)."""
  import keras  # pylint: disable=import-outside-toplevel
  from keras import tree  # pylint: disable=import-outside-toplevel
  from keras.src.backend.tensorflow import trainer  # pylint: disable=import-outside-toplevel
  if getattr(trainer, "_mammo_patched", False):
    return
  names = ("_maybe_symbolic_build",)
  if not (keras.__version__.startswith(KNOWN_KERAS) and all(hasattr(trainer.TensorFlowTrainer, n) for n in names)
          and hasattr(trainer, "reduce_per_replica") and hasattr(trainer, "_collective_all_reduce_multi_worker")):
    raise RuntimeError(f"--strategy=multiworker: Keras {keras.__version__}'s trainer is not the one this "
                       "package patches for multi-worker training (mammo_train/training/multiworker.py)")

  def maybe_symbolic_build(self, iterator=None, data_batch=None):
    """Builds from this worker's own first batch: only its shapes matter."""
    if self._distribute_strategy is None:  # pylint: disable=protected-access
      return
    if iterator is not None:
      for _, _, batches in iterator:
        data_batch = tree.map_structure(
            lambda v: self.distribute_strategy.experimental_local_results(v)[0]
            if isinstance(v, tf.distribute.DistributedValues) else v, next(batches))
        break
    with self.distribute_strategy.scope():
      self._symbolic_build(data_batch=data_batch)  # pylint: disable=protected-access

  reduce_per_replica = trainer.reduce_per_replica

  def reduce_scalars_without_axis(values, strategy, reduction):
    if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):  # pylint: disable=protected-access
      return tree.map_structure(
          lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0), values)
    return reduce_per_replica(values, strategy, reduction)

  trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build  # pylint: disable=protected-access
  trainer.reduce_per_replica = reduce_scalars_without_axis
  trainer._mammo_patched = True  # pylint: disable=protected-access


def strategy() -> tf.distribute.MultiWorkerMirroredStrategy:
  patch_keras()
  return tf.distribute.MultiWorkerMirroredStrategy()


def is_multiworker(distribution: tf.distribute.Strategy) -> bool:
  return isinstance(distribution, tf.distribute.MultiWorkerMirroredStrategy)


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Each worker keeps its share of the elements (see the module docstring for why not by file)."""
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return dataset.with_options(options)
