"""The mini-MIAS label table: `Info.txt` (or the Kaggle copy, `Info_kaggle.txt`).

`Info.txt` is a README whose table rows are the lines that begin with `mdb`;
`Info_kaggle.txt` is the same table under a header line. Lines end in CRLF
and carry trailing spaces. One row per finding, so a film with several
findings has several rows (mdb005, 132, 144, 223, 239, 249 have two, mdb226
three) and a normal film has one `NORM` row with no severity. Where a
finding's position is not given (mdb059 has none; mdb216, 233 and 245 have
`*NOTE 3*` in `Info.txt` and nothing in the Kaggle copy) x, y and radius are
-1.

The table puts the origin of x, y at the BOTTOM-left corner (note 3 of
`Info.txt`); everything here returns rows from the top (row = 1024 - Y), as
numpy indexes the pixels.

Any value the table does not define stops the parse with the file and line
number: a typo in a label table silently changes a dataset.
"""
import dataclasses
import re
from typing import Dict, List, Optional, Tuple

# Every mini-MIAS film is 1024 x 1024 pixels (note 2 of Info.txt).
IMAGE_SIZE = 1024
TISSUES = {"F": "fatty", "G": "fatty-glandular", "D": "dense"}
CLASSES = {
    "CALC": "calcification",
    "CIRC": "well-defined / circumscribed mass",
    "SPIC": "spiculated mass",
    "MISC": "other, ill-defined mass",
    "ARCH": "architectural distortion",
    "ASYM": "asymmetry",
    "NORM": "normal",
}
SEVERITIES = {"B": "benign", "M": "malignant"}
# Image-level severity, least severe first.
NORMAL, BENIGN, MALIGNANT = "normal", "benign", "malignant"
UNKNOWN = -1
_REFNUM = re.compile(r"mdb\d{3}")
_NOTE_3 = ("*NOTE", "3*")


class InfoError(ValueError):
  """The label table cannot be read; the message names the file and, where there is one, the line."""

  def __init__(self, source: str, line_number: Optional[int], problem: str):
    where = f"{source}, line {line_number}" if line_number else source
    super().__init__(f"{where}: {problem}")


@dataclasses.dataclass(frozen=True)
class Finding:
  """One abnormality: CLASS, SEVERITY and its circle, or -1 where not given."""
  abnormality: str  # a key of CLASSES other than NORM
  severity: str  # "B" or "M"
  x: int  # column, from the left
  y: int  # row, from the TOP (converted from the table's bottom-left origin)
  radius: int

  @property
  def has_position(self) -> bool:
    return self.x != UNKNOWN


@dataclasses.dataclass(frozen=True)
class Film:
  """All rows of one film (one image)."""
  refnum: str  # "mdb001"
  tissue: str  # "F", "G" or "D"
  findings: Tuple[Finding, ...]  # empty for a normal film

  @property
  def number(self) -> int:
    return int(self.refnum[3:])

  @property
  def severity(self) -> str:
    """normal, benign or malignant: malignant if any finding is (mdb144 has one of each)."""
    if not self.findings:
      return NORMAL
    return MALIGNANT if any(f.severity == "M" for f in self.findings) else BENIGN

  @property
  def abnormalities(self) -> Tuple[str, ...]:
    """The distinct classes of the film's findings, in table order; ("NORM",) if none."""
    return tuple(dict.fromkeys(f.abnormality for f in self.findings)) or ("NORM",)

  @property
  def laterality(self) -> str:
    """Even numbers are left breasts, odd ones right (note 1 of Info.txt)."""
    return "L" if self.number % 2 == 0 else "R"

  @property
  def patient_id(self) -> str:
    """One id per film pair, named after its first film: mdb001 and mdb002 -> mias-001."""
    first = self.number if self.number % 2 else self.number - 1
    return f"mias-{first:03d}"

  @property
  def file_name(self) -> str:
    return f"{self.refnum}.pgm"


@dataclasses.dataclass(frozen=True)
class Row:
  line_number: int
  refnum: str
  tissue: str
  finding: Optional[Finding]  # None for a NORM row


def _int(token: str, what: str, source: str, line_number: int) -> int:
  if not token.isdigit():
    raise InfoError(source, line_number, f"{what} must be a whole number, got {token!r}")
  return int(token)


def _finding(abnormality: str, tokens: List[str], source: str, line_number: int) -> Finding:
  """The finding of a non-NORM row; tokens start at SEVERITY."""
  if not tokens:
    raise InfoError(source, line_number, "abnormal row has no SEVERITY (expected B or M)")
  severity, position = tokens[0], tokens[1:]
  if severity not in SEVERITIES:
    raise InfoError(source, line_number, f"unknown SEVERITY {severity!r} (expected one of {sorted(SEVERITIES)})")
  if not position or tuple(position) == _NOTE_3:
    return Finding(abnormality, severity, UNKNOWN, UNKNOWN, UNKNOWN)
  if len(position) != 3:
    raise InfoError(source, line_number, f"expected X Y RADIUS after SEVERITY, got {' '.join(position)!r}")
  x, y, radius = (_int(t, name, source, line_number) for t, name in zip(position, ("X", "Y", "RADIUS")))
  if not (x < IMAGE_SIZE and 0 < y <= IMAGE_SIZE):
    raise InfoError(source, line_number, f"centre X={x} Y={y} is outside the {IMAGE_SIZE}x{IMAGE_SIZE} film")
  return Finding(abnormality, severity, x, IMAGE_SIZE - y, radius)


def parse_row(line: str, source: str, line_number: int) -> Row:
  """One table row: REFNUM TISSUE CLASS [SEVERITY [X Y RADIUS | *NOTE 3*]]."""
  tokens = line.split()
  if len(tokens) < 3:
    raise InfoError(source, line_number, f"expected at least REFNUM TISSUE CLASS, got {line.strip()!r}")
  refnum, tissue, abnormality = tokens[:3]
  if not _REFNUM.fullmatch(refnum):
    raise InfoError(source, line_number, f"REFNUM {refnum!r} is not of the form mdbNNN")
  if tissue not in TISSUES:
    raise InfoError(source, line_number, f"unknown tissue {tissue!r} (expected one of {sorted(TISSUES)})")
  if abnormality not in CLASSES:
    raise InfoError(source, line_number, f"unknown CLASS {abnormality!r} (expected one of {sorted(CLASSES)})")
  if abnormality == "NORM":
    if len(tokens) > 3:
      raise InfoError(source, line_number, f"NORM row has extra values {' '.join(tokens[3:])!r}")
    return Row(line_number, refnum, tissue, None)
  return Row(line_number, refnum, tissue, _finding(abnormality, tokens[3:], source, line_number))


def parse_rows(text: str, source: str) -> List[Row]:
  """Every table row of `text`: the lines that begin with `mdb`; the rest is README or header."""
  return [parse_row(line, source, number)
          for number, line in enumerate(text.splitlines(), start=1) if line.startswith("mdb")]


def films(rows: List[Row], source: str) -> Dict[str, Film]:
  """Groups rows by film, in REFNUM order, and checks that a film's rows agree."""
  grouped: Dict[str, List[Row]] = {}
  for row in rows:
    grouped.setdefault(row.refnum, []).append(row)
  result = {}
  for refnum in sorted(grouped):
    film_rows = grouped[refnum]
    first = film_rows[0]
    for row in film_rows[1:]:
      if row.tissue != first.tissue:
        raise InfoError(source, row.line_number,
                        f"{refnum} has tissue {row.tissue} here but {first.tissue} on line {first.line_number}")
    findings = tuple(row.finding for row in film_rows if row.finding)
    if findings and len(findings) != len(film_rows):
      raise InfoError(source, film_rows[-1].line_number, f"{refnum} has both NORM and abnormal rows")
    result[refnum] = Film(refnum, first.tissue, findings)
  return result


def parse(text: str, source: str = "Info.txt") -> Dict[str, Film]:
  """REFNUM -> Film for a whole `Info.txt` or `Info_kaggle.txt`.

  Args:
    text: the file's text (any line ends).
    source: file name for error messages.

  Raises:
    InfoError: a value the table does not define, naming file and line.
  """
  table = films(parse_rows(text, source), source)
  if not table:
    raise InfoError(source, None, "no table rows (lines beginning with 'mdb'): not a mini-MIAS Info.txt?")
  return table


def read(path) -> Dict[str, Film]:
  """Parses a label table file."""
  with open(path, encoding="latin-1", newline="") as handle:
    return parse(handle.read(), str(path))
