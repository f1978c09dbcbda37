"""Reading the user's CSV files (cameras, 911 calls): UTF-8 (a BOM allowed), headers trimmed, rows checked."""
from __future__ import annotations

import csv
import io
import pathlib
from collections.abc import Iterator


def csv_rows(path: pathlib.Path, error: type[Exception]) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    """The trimmed header and an iterator of (``"PATH line N"``, row) of a CSV file.

    Raises ``error`` (one line) for a file that is not UTF-8 and, while iterating, for a row whose
    number of fields differs from the header's.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or ()]
    reader.fieldnames = header

    def rows() -> Iterator[tuple[str, dict]]:
        for row in reader:
            where = f"{path} line {reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                raise error(f"{where}: expected {len(header)} fields")
            yield where, row

    return header, rows()
