"""NAS-Bench-201's table as the judge of a search: the benchmark's accuracy of a cell, looked up.

The table is a CSV (optionally gzip-compressed) with at least the columns ``arch`` (the benchmark's cell
string) and the accuracy column of the data set searched: ``cifar10_test_200`` (CIFAR-10 test accuracy
after the benchmark's 200-epoch recipe) or ``cifar100_test_200``.  The project ships the benchmark's
figures as nb201_table/accuracy.csv.gz (MIT, see nb201_table/NOTICE.md); docs/spaces.md and nb201_table/NOTICE.md show
how to make such a file from the official ``nats_bench`` API.

A cell's *percentile* is the share of the table's cells (%) that score strictly below it: 100 is the best
cell, 50 the median.
"""
from __future__ import annotations

import bisect
import csv
import gzip
import io
import os
from pathlib import Path

from .arch import CellGenotype, CellGenotypeError


# data set -> the table column that judges a search on it
COLUMNS = {"cifar10": "cifar10_test_200", "cifar100": "cifar100_test_200"}


def read_text(path: str | os.PathLike) -> str:
    """A text file, gzip-compressed or not (told by its first bytes, not its name).  Raises OSError (a
    corrupt gzip file: gzip.BadGzipFile, an OSError too), EOFError or UnicodeDecodeError."""
    raw = Path(path).read_bytes()
    return gzip.decompress(raw).decode() if raw[:2] == b"\x1f\x8b" else raw.decode()


# the benchmark's table shipped with the project (nb201_table/, with its MIT notice)
SHIPPED = Path(__file__).resolve().parents[2] / "nb201_table" / "accuracy.csv.gz"


class TableError(ValueError):
    """A table file that cannot be read or lacks what is asked of it (the CLI reports it as one error line:
    utils.errors.USER_ERRORS)."""


def column_for(dataset: str) -> str:
    if dataset not in COLUMNS:
        raise TableError(f"the NAS-Bench-201 table judges searches on {' or '.join(COLUMNS)}, not on {dataset!r} "
                         "(the benchmark trained no cell on it)")
    return COLUMNS[dataset]


class NB201Table:
    """arch string -> {column: accuracy}; ``lookup`` and ``percentile`` per column."""

    def __init__(self, rows: dict[str, dict[str, float]], columns: list[str], where: str = "table"):
        self.rows, self.columns, self.where = rows, columns, where
        self._sorted: dict[str, list[float]] = {}

    @classmethod
    def load(cls, path: str | os.PathLike, need: tuple[str, ...] = ("cifar10_test_200",)) -> "NB201Table":
        """Read a CSV (.csv or .csv.gz); ``need``: columns that must be there.  Every row's arch must be a
        valid cell string and every needed value a number (``covers`` checks which cells are there)."""
        path = Path(path)
        try:
            text = read_text(path)
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise TableError(f"cannot read the NAS-Bench-201 table {path}: {getattr(e, 'strerror', None) or e}") from None
        reader = csv.DictReader(io.StringIO(text))
        columns = list(reader.fieldnames or [])
        lacking = [c for c in ("arch", *need) if c not in columns]
        if lacking:
            raise TableError(f"the NAS-Bench-201 table {path} lacks the column(s) {', '.join(lacking)} "
                             f"(it has: {', '.join(columns) or 'none'})")
        rows: dict[str, dict[str, float]] = {}
        for n, row in enumerate(reader, start=2):
            try:
                key = CellGenotype.from_string(row["arch"]).to_string()
                rows[key] = {c: float(row[c]) for c in columns if c in need or _is_number(row[c])}
            except CellGenotypeError as e:
                raise TableError(f"{path} line {n}: {e}") from None
            except (TypeError, ValueError):
                raise TableError(f"{path} line {n}: a value of {', '.join(need)} is not a number") from None
        return cls(rows, columns, str(path))

    def check_covers(self, candidates: tuple[str, ...] | list[str], column: str) -> None:
        """TableError unless every cell made of ``candidates`` has a ``column`` value (a search can end on any)."""
        import itertools

        missing = [c for c in itertools.product(candidates, repeat=6)
                   if column not in self.rows.get(CellGenotype(c).to_string(), {})]
        if missing:
            raise TableError(f"the NAS-Bench-201 table {self.where} lacks {column} for {len(missing)} of the "
                             f"{len(candidates) ** 6} cells this search can find, e.g. {CellGenotype(missing[0]).to_string()}")

    def lookup(self, cell: CellGenotype | str, column: str = "cifar10_test_200") -> float:
        key = cell.to_string() if isinstance(cell, CellGenotype) else CellGenotype.from_string(cell).to_string()
        if column not in self.columns:
            raise TableError(f"the NAS-Bench-201 table {self.where} has no column {column!r}")
        row = self.rows.get(key)
        if row is None or column not in row:
            raise TableError(f"the NAS-Bench-201 table {self.where} has no {column} value for {key}")
        return row[column]

    def values(self, column: str) -> list[float]:
        """Every cell's value of ``column``, sorted."""
        if column not in self._sorted:
            self._sorted[column] = sorted(r[column] for r in self.rows.values() if column in r)
        return self._sorted[column]

    def percentile(self, value: float, column: str = "cifar10_test_200") -> float:
        """Share of cells (%) scoring strictly below ``value``."""
        values = self.values(column)
        return 100.0 * bisect.bisect_left(values, value) / len(values)

    def judge(self, cell: CellGenotype, dataset: str) -> dict[str, object]:
        """The log fields of a searched cell: its string, the table's accuracy and the percentile."""
        column = column_for(dataset)
        acc = self.lookup(cell, column)
        return {"nb201_arch": cell.to_string(), f"nb201_{dataset}_test": acc,
                "nb201_percentile": self.percentile(acc, column)}


def _is_number(text: str | None) -> bool:
    try:
        float(text)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False
