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
- Each worker reads and decodes only its own share of the training split
  (`per_worker_batches`): a range of examples (`inputs.data.Share`, from
  `tfds.even_splits`), not of files, since a TFDS split has few large
  shards, often fewer than workers, and tf.data's FILE sharding (and AUTO,
  which tries FILE first) then fails at the first batch. The worker
  oversamples and shuffles its share with its own class counts and seed;
  its batches are per replica, so a global batch is the per-replica batch
  times the replicas. Validation is read whole by every worker and sharded
  by DATA (`shard_by_data`): each keeps every n-th batch of the same
  deterministic stream.
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


def input_share(distribution: tf.distribute.MultiWorkerMirroredStrategy) -> tuple[int, int]:
  """(this worker's input pipeline, the number of pipelines): its place among the chief and the workers.

  What tf.distribute's InputContext will say (chief first, then the workers
  in order), known here before any dataset is made, because a worker's
  feature cache must be computed for its share before its batches are.
  """
  resolver = distribution.cluster_resolver
  spec = resolver.cluster_spec().as_dict()
  tasks = [("chief", i) for i in range(len(spec.get("chief", ())))] + [
      ("worker", i) for i in range(len(spec.get("worker", ())))]
  return tasks.index((resolver.task_type, resolver.task_id)), len(tasks)


def per_worker_batches(distribution: tf.distribute.MultiWorkerMirroredStrategy, share: tuple[int, int],
                       global_batch: int, make) -> tf.distribute.DistributedDataset:
  """The training batches of a cluster: `make(per-replica batch size)` is this worker's stream of its `share`.

  Raises:
    RuntimeError: tf.distribute places this worker elsewhere than `input_share` said (a TF whose
      input pipelines are numbered differently): training on it would read one share twice.
  """
  def this_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
    if (context.input_pipeline_id, context.num_input_pipelines) != share:
      raise RuntimeError(f"--strategy=multiworker: TensorFlow made this worker input pipeline "
                         f"{context.input_pipeline_id} of {context.num_input_pipelines}, where "
                         f"mammo_train/training/multiworker.py expected {share[0]} of {share[1]}")
    return make(context.get_per_replica_batch_size(global_batch))
  return distribution.distribute_datasets_from_function(this_worker)


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """Each worker keeps its share of the elements of the same stream (validation: see the module docstring)."""
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return dataset.with_options(options)
