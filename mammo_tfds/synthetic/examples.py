"""The synthetic dataset's plan (who has which breast and lesion) and its per-breast examples.

Kept apart from the builder so worker processes and Beam workers can import it
by name.
"""
import numpy as np

from mammo_tfds import audit, features, imaging, phantom

SEED = 20261126
MALIGNANT_SHARE = 0.75
BOTH_BREASTS_SHARE = 0.3


def plan(num_patients: int, seed: int = SEED):
  """Every (patient, laterality, label, lesion) of the dataset, decided up front."""
  rng = np.random.default_rng(seed)
  breasts = []
  for index in range(num_patients):
    patient = f"S-{index:04d}"
    sides = ("L", "R") if rng.random() < BOTH_BREASTS_SHARE else (str(rng.choice(["L", "R"])),)
    for side in sides:
      breasts.append(dict(
          patient_id=patient, laterality=side, malignant=bool(rng.random() < MALIGNANT_SHARE),
          lesion=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.25, 0.6)), float(rng.uniform(*phantom.LESION_RADIUS))),
          seed=int(rng.integers(2**31))))
  return breasts


def breast_examples(breast: dict, image_size: int, source_shape: tuple):
  """Both views of one breast, as (key, example) pairs of the common schema."""
  rng = np.random.default_rng(breast["seed"])
  examples = []
  for view in features.VIEWS:
    film = phantom.draw_film(rng, *source_shape, breast["malignant"], breast["laterality"], view,
                             lesion=breast["lesion"])
    key = f"{breast['patient_id']}_{breast['laterality']}_{view}"
    result = imaging.preprocess(film.pixels, image_size, source=key)
    examples.append((key, features.example(
        result, image_size, label=int(breast["malignant"]), patient_id=breast["patient_id"],
        laterality=breast["laterality"], view=view, source=f"synthetic/{key}",
        lesion_box=film.lesion_box)))
    examples.append(audit.seen(key, film.pixels, result, admitted_by="drawn by mammo_tfds.phantom"))
  return examples
