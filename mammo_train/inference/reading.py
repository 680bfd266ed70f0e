"""Reading and preprocessing the files prediction scores, in a pool of worker processes.

Files go through `mammo_tfds.sources.read` and `mammo_tfds.imaging.preprocess`
exactly as a builder takes them, at the dataset's stored size.

- Parallel and flat in memory: `prepared_stream` reads and preprocesses files
  on a pool of worker processes (`generation.build_workers()`), in order, with
  at most `window` files in flight, so memory does not grow with the number
  of files however slow the model is.
- Bad files: a `Failure` each, with its `Reason` code and the one-line problem.
- Vouched files: a file the manifest lists is read as vouched for
  (`sources.read(evidence="manifest")`): the row is the evidence that it is a
  mammogram.
- View modifiers (`SourceImage.view_modifiers`): stereotactic and specimen
  images are refused (codes `stereotactic`, `specimen`) unless
  `allow_view_modifiers`; spot, magnification, implant displaced and
  synthesized 2D images are read and named (the `view_modifiers` column).
- The review page's thumbnails (source with the crop box, stored input) are
  made here, by the workers, so no full-field image crosses processes.
"""
import collections
import dataclasses
import functools
import multiprocessing
import os
from typing import Iterable, Iterator, Optional

import numpy as np

from mammo_tfds import audit, generation, imaging, sources
from mammo_tfds.reasons import Reason

# View modifiers (sources.VIEW_MODIFIERS) a screening model is not scored on unless --allow_view_modifiers.
REFUSED_VIEW_MODIFIERS = {"stereotactic": Reason.stereotactic, "specimen": Reason.specimen}


@dataclasses.dataclass(frozen=True)
class Prepared:
  """One file read and preprocessed, with its tags."""
  path: str
  image: np.ndarray  # (stored_size, stored_size, 1) uint8
  source: sources.SourceImage  # pixels dropped (unless kept for --explain): only the tags travel back
  crop_box: np.ndarray
  flipped: bool
  orientation: str
  thumbnails: tuple = ()  # small JPEGs for review.html: the source with the crop box, the stored input


@dataclasses.dataclass(frozen=True)
class Failure:
  """A file that was not scored, with the reason."""
  path: str
  reason: Reason  # the code, e.g. Reason.not_mammogram
  detail: str  # the one-line problem


def prepare(path: str, stored_size: int, allow_non_mammogram: bool = False, keep_pixels: bool = False,
            vouched: bool = False, allow_view_modifiers: bool = False):
  """Reads and preprocesses one file (in a worker process): Prepared, or Failure with the reason code.

  `vouched`: the file is in the user's manifest, which is evidence that it
  is a mammogram (`sources.read(evidence="manifest")`). Stereotactic and
  specimen images are refused unless `allow_view_modifiers`. The source
  pixels are sent back only with `keep_pixels` (for an overlay on them):
  otherwise a full-field image would cross processes for nothing.
  """
  try:
    image = sources.read(path, allow_non_mammogram=allow_non_mammogram, evidence="manifest" if vouched else None)
    refused = [m for m in image.view_modifiers if m in REFUSED_VIEW_MODIFIERS]
    if refused and not allow_view_modifiers:
      return Failure(path, REFUSED_VIEW_MODIFIERS[refused[0]], f"a {refused[0]} image, not a screening view "
                     "(--allow_view_modifiers scores it anyway)")
    result = imaging.preprocess(image.pixels, stored_size, path, image.chest_wall, image.laterality)
  except sources.SourceError as error:
    return Failure(path, error.code, error.problem)
  except imaging.BlankImageError as error:
    return Failure(path, Reason.blank, str(error).split(": ", 1)[-1])
  except Exception as error:  # pylint: disable=broad-except
    # One odd file (a reader bug, a decoder crash) must not lose the others' scores.
    return Failure(path, Reason.unexpected_error, f"{type(error).__name__}: {error}")
  source = image if keep_pixels else dataclasses.replace(image, pixels=np.zeros((0, 0), np.uint8))
  thumbnails = (audit.source_thumbnail(image.pixels, result.crop_box), audit.stored_thumbnail(result.image))
  return Prepared(path, result.image, source, result.crop_box, result.flipped, result.orientation, thumbnails)


def prepared_stream(files: Iterable[str], stored_size: int, *, workers: Optional[int] = None,
                    window: Optional[int] = None, allow_non_mammogram: bool = False,
                    keep_pixels: bool = False, vouched: frozenset = frozenset(),
                    allow_view_modifiers: bool = False) -> Iterator:
  """Prepared / Failure per file, in order, read on `workers` processes (default `generation.build_workers()`).

  `vouched`: absolute paths of the files a manifest lists (see `prepare`).
  At most `window` files (default 4 per worker) are in flight or waiting to
  be taken, so memory stays flat in the number of files. Workers are forked
  and run numpy / Pillow / pydicom only, never TF (as the builders' workers).
  """
  fn = functools.partial(prepare, stored_size=stored_size, allow_non_mammogram=allow_non_mammogram,
                         keep_pixels=keep_pixels, allow_view_modifiers=allow_view_modifiers)
  workers = workers or generation.build_workers()
  files = iter(files)
  if workers == 1:
    yield from (fn(path, vouched=os.path.abspath(path) in vouched) for path in files)
    return
  window = window or 4 * workers
  with multiprocessing.get_context("fork").Pool(workers) as pool:
    pending = collections.deque()
    for path in files:
      pending.append(pool.apply_async(fn, (path,), {"vouched": os.path.abspath(path) in vouched}))
      if len(pending) >= window:
        yield pending.popleft().get()
    while pending:
      yield pending.popleft().get()
