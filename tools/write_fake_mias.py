"""Writes a made-up `all-mias.tar.gz`: the builder's dummy data, and the base of its tests.

  python tools/write_fake_mias.py mammo_tfds/mias/dummy_data

Nine made-up patients (18 films) in the real archive's layout and formats:
1024x1024 binary PGMs with a `# CREATOR` comment, and an `Info.txt` that is a
README around the table, with CRLF line ends, trailing spaces, a finding
without coordinates, one with `*NOTE 3*`, a film with a benign and a
malignant row and one with three rows. No real pixel or row is in it.

Films are flat shapes (a half-ellipse breast cut by the film edge on the
chest wall side, a brighter disc for each finding, a bright film label in
the background): the archive gzips to about 60 KB, 3 KB a film.
"""
import gzip
import io
import pathlib
import sys
import tarfile

import numpy as np

SIZE = 1024
# Refnum -> rows after the refnum, as Info.txt writes them. Tissue is per
# patient (film pair); strata of 2 and 4 patients put films in all splits.
ROWS = {
    "mdb001": ["G CIRC B 700 600 60"],
    "mdb002": ["G NORM "],
    "mdb003": ["G NORM "],
    "mdb004": ["G MISC B"],
    "mdb005": ["D SPIC M 650 420 40"],
    "mdb006": ["D NORM "],
    "mdb007": ["D CALC M *NOTE 3* "],
    "mdb008": ["D NORM "],
    "mdb009": ["D MISC B 700 800 30", "D MISC M 500 400 45"],
    "mdb010": ["D NORM "],
    "mdb011": ["D NORM "],
    "mdb012": ["D CALC B 300 700 10", "D CALC M 420 520 25", "D CALC M 380 300 8"],
    "mdb013": ["F NORM "],
    "mdb014": ["F NORM "],
    "mdb015": ["F NORM "],
    "mdb016": ["F NORM "],
    "mdb017": ["F NORM "],
    "mdb018": ["F NORM "],
}
README = """              MAMMOGRAPHIC IMAGE ANALYSIS SOCIETY   
                  MiniMammographic Database (MADE-UP TEST COPY)

This is not the real database: every film and row below is invented.

4th column: Severity of abnormality;
                B - Benign
3) Coordinate system origin is the bottom-left corner.

=================================================================

"""


def film(number: int, findings) -> np.ndarray:
  """A flat film; even numbers are left breasts (chest wall on the left), as in mini-MIAS."""
  yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
  # Chest wall at column 60: real films are padded inside the 1024 matrix too.
  radial = np.hypot((xx - 60) / 600, (yy - 512) / 420)
  image = np.where((radial < 1) & (xx >= 60), 120, 0)
  image[40:100, 780:960] = 240  # film label, in the background
  if number % 2:
    image = image[:, ::-1]
  for x, y, radius in findings:  # in the film's own frame, y from the bottom
    image = np.where(np.hypot(xx - x, yy - (SIZE - y)) < max(radius, 4), image + 40, image)
  return np.clip(image, 0, 255).astype(np.uint8)


def pgm(pixels: np.ndarray) -> bytes:
  header = f"P5\n# CREATOR: GIMP PNM Filter Version 1.1\n{pixels.shape[1]} {pixels.shape[0]}\n255\n"
  return header.encode() + pixels.tobytes()


def info_txt() -> str:
  rows = [f"{refnum} {row}" for refnum, film_rows in ROWS.items() for row in film_rows]
  return (README + "\n".join(rows) + "\n\n" + "=" * 65 + "\n").replace("\n", "\r\n")


def positions(rows):
  """(x, y, radius) of the rows that give them; y as in the table (from the bottom)."""
  return [tuple(int(v) for v in row.split()[3:6]) for row in rows
          if len(row.split()) == 6 and row.split()[3].isdigit()]


def _add(tar: tarfile.TarFile, name: str, data: bytes):
  member = tarfile.TarInfo(name)
  member.size, member.mtime, member.mode = len(data), 946684800, 0o664
  tar.addfile(member, io.BytesIO(data))


def write_archive(path: pathlib.Path):
  """Writes the made-up archive; the same bytes on every run."""
  buffer = io.BytesIO()
  with tarfile.open(fileobj=buffer, mode="w") as tar:
    for refnum, rows in ROWS.items():
      _add(tar, f"{refnum}.pgm", pgm(film(int(refnum[3:]), positions(rows))))
    _add(tar, "Info.txt", info_txt().encode("latin-1"))
  path.write_bytes(gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0))


def main(argv):
  if len(argv) != 2:
    sys.exit(__doc__)
  folder = pathlib.Path(argv[1])
  folder.mkdir(parents=True, exist_ok=True)
  write_archive(folder / "all-mias.tar.gz")
  print(f"wrote {folder / 'all-mias.tar.gz'} ({(folder / 'all-mias.tar.gz').stat().st_size} bytes)")


if __name__ == "__main__":
  main(sys.argv)
