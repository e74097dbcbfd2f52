"""Batch scoring: a file, folder or glob larger than memory, scored through an engine into part files.

    import deploykit
    report = deploykit.batch("bank-model.joblib", "s3://bucket/customers/*.csv", "scores/")
    report.rows_out, report.parts

The core owns the run: it finds the input files, resolves SOURCE to the artifact (a model
file, an MLflow model, or the kept artifact of a recorded deployment), splits the input into
*units* (a byte range of a CSV or JSON Lines file, a few row groups of a Parquet file), checks
every row against the model's schema exactly as the online server does, scores, and writes one
part file per unit. An engine only decides where units run: ``local`` streams them in this
process or ``--workers N`` processes, ``dask`` on a Dask cluster; a plugin adds others (Ray,
Spark) through ``deploykit_register_engines``.

A part is written under a temporary name (``.part-....tmp``) and renamed when complete, so a
killed run never leaves a half-written part under a final name; ``resume=True`` skips the parts
already complete. ``_report.json`` in the output folder records the run (rows in and out, model
sha256, engine, seconds, versions, and the plan a resumed run must match).

pyarrow, pandas and fsspec are imported when a run starts, never at ``import deploykit``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import re
import sys
import time
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

from deploykit.errors import BatchError, SchemaError

if TYPE_CHECKING:

    from deploykit.artifact import Artifact
    from deploykit.errors import Problem
    from deploykit.schema import Column, Schema

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "ON_ERROR",
    "OUTPUT_FORMATS",
    "REPORT_NAME",
    "BatchReport",
    "Engine",
    "EngineInfo",
    "EngineRegistry",
    "Job",
    "PartResult",
    "Unit",
    "batch",
    "csv_column",
    "dictionary_objects",
    "find_inputs",
    "get_engines",
    "plan_units",
    "prefetched",
    "run_unit",
]

#: What a bad row does: stop the run, drop the row, or write it with null predictions.
ON_ERROR = ("fail", "skip", "null")
#: Part file formats.
OUTPUT_FORMATS = ("parquet", "csv")
#: A unit (and so a part file) covers about this many input bytes.
DEFAULT_CHUNK_BYTES = 16 << 20
#: The run's record in the output folder (a leading underscore: Parquet readers skip it).
REPORT_NAME = "_report.json"
#: Rows scored per model call inside a unit (bounded memory, few calls).
BATCH_ROWS = 65_536
#: Problems kept in the report for ``on_error`` skip/null (the counts are always complete).
MAX_REPORTED_PROBLEMS = 100

_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_GLOB = re.compile(r"[*?\[]")


# -- engines and their registry --------------------------------------------------------------

@runtime_checkable
class Engine(Protocol):
    """Runs units of a batch job somewhere; built with ``cls(workers=N, address=ADDRESS)``.

    ``run`` calls :func:`run_unit` for every unit (in this process, in worker processes, on a
    cluster...) and ``on_part`` in this process with each unit's PartResult as it completes.
    """

    def run(self, job: Job, units: list[Unit], on_part: Callable[[PartResult], None]) -> None:
        """Score ``units``; raise the first unit's DeployKitError (e.g. a SchemaError) if one fails."""

    def versions(self) -> dict[str, Any]:
        """Versions of what scored (python, numpy, scikit-learn... of the workers), for the report."""


@dataclass
class EngineInfo:
    """A registered engine: where its class lives, the modules it needs, and the extra that installs them."""

    name: str
    cls: str | type
    description: str = ""
    requires: tuple[str, ...] = ()
    extra: str | None = None

    @property
    def missing(self) -> list[str]:
        """Modules this engine needs that are not importable here."""
        return [m for m in self.requires if importlib.util.find_spec(m.split(".")[0]) is None
                or importlib.util.find_spec(m) is None]

    @property
    def install_hint(self) -> str:
        """The pip line that makes this engine usable."""
        return f"pip install 'deploykit[{self.extra}]'" if self.extra else f"pip install {' '.join(self.requires)}"

    def load(self) -> type:
        """Import and return the engine class; BatchError naming the extra if a module is missing."""
        if self.missing:
            raise BatchError(f"engine {self.name!r} needs {', '.join(self.missing)}, which is not installed; "
                             f"run: {self.install_hint}")
        if not isinstance(self.cls, str):
            return self.cls
        module, _, attr = self.cls.partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


class EngineRegistry:
    """Engine names to classes, filled by the ``deploykit_register_engines`` hook."""

    def __init__(self) -> None:
        self._engines: dict[str, EngineInfo] = {}

    def add(self, name: str, cls: str | type, *, description: str = "", requires: Sequence[str] = (),
            extra: str | None = None) -> None:
        """Register an engine class (or ``"module:Class"`` to import it lazily) under ``name``."""
        self._engines[name] = EngineInfo(name, cls, description, tuple(requires), extra)

    def names(self) -> list[str]:
        """Registered engine names, sorted."""
        return sorted(self._engines)

    def info(self, name: str) -> EngineInfo:
        """The EngineInfo of ``name``, or BatchError listing every registered engine and its extra."""
        try:
            return self._engines[name]
        except KeyError:
            listed = ", ".join(f"{e.name} ({'ready' if not e.missing else 'needs ' + e.install_hint})"
                               + (f", extra deploykit[{e.extra}]" if e.extra and not e.missing else "")
                               for e in self) or "none"
            raise BatchError(
                f"unknown batch engine {name!r}; installed engines: {listed}. Another engine (Ray, Spark...) "
                "is a pip-installed plugin implementing deploykit_register_engines"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._engines

    def __iter__(self) -> Iterator[EngineInfo]:
        return iter(self._engines[n] for n in self.names())


_engines: tuple[Any, EngineRegistry] | None = None


def get_engines() -> EngineRegistry:
    """The registry of every engine the loaded plugins registered (rebuilt when the plugin manager is)."""
    global _engines
    from deploykit.plugins import get_plugin_manager

    pm = get_plugin_manager()
    if _engines is None or _engines[0] is not pm:
        registry = EngineRegistry()
        pm.hook.deploykit_register_engines(registry=registry)
        _engines = (pm, registry)
    return _engines[1]


# -- the plan: input files and units ---------------------------------------------------------

@dataclass(frozen=True)
class InputFile:
    """One input file: its URL, format, size and the fingerprint a resumed run must match."""

    url: str
    format: str
    size: int
    stamp: str


@dataclass(frozen=True)
class Unit:
    """A piece of one input file that becomes one part file.

    CSV and JSON Lines: the bytes ``start``..``end`` (whole lines; ``header`` is the CSV header
    line). Parquet: the row groups ``row_groups``, whose first row is ``first_row``.
    """

    index: int
    file: InputFile
    file_index: int
    start: int = 0
    end: int = 0
    header: bytes = b""
    row_groups: tuple[int, ...] = ()
    first_row: int | None = None

    @property
    def part(self) -> str:
        """The part file's name without its suffix."""
        return f"part-{self.file_index:05d}-{self.index:06d}"

    @property
    def size(self) -> int:
        """Input bytes this unit covers (for progress)."""
        return self.end - self.start


def _filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))  # type: ignore[no-any-return]
    except (ImportError, ValueError) as exc:
        scheme = url.split("://")[0]
        raise BatchError(f"cannot open {url!r}: {exc}; install the fsspec library for {scheme}:// "
                         f"(s3fs for s3://, gcsfs for gs://, adlfs for abfs://)") from None


def _is_local(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def _join(fs: Any, base: str, name: str) -> str:
    return os.path.join(base, name) if _is_local(fs) else f"{base.rstrip('/')}/{name}"


def _unstrip(fs: Any, path: str) -> str:
    """A path from ``fs`` back as a URL the same filesystem opens (s3://bucket/key)."""
    if _is_local(fs):
        return path
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    return f"{protocol}://{path}"


def find_inputs(source: str | Path, storage_options: dict[str, Any] | None = None) -> list[InputFile]:
    """The input files of ``source`` (a file, a folder, or a glob; local or any fsspec URL), sorted.

    Raises BatchError for a missing file, an empty folder or glob, or a file whose format the
    suffix does not say (``.csv``, ``.parquet``/``.pq``, ``.jsonl``/``.ndjson``)."""
    text = str(source)
    fs, path = _filesystem(text, storage_options)
    if _GLOB.search(path):
        paths = sorted(p for p in fs.glob(path) if fs.isfile(p))
        if not paths:
            raise BatchError(f"input glob {text!r} matches no file; check the pattern and the folder it names")
    elif fs.isdir(path):
        paths = sorted(p for p in fs.find(path) if Path(p).suffix.lower() in _SUFFIXES
                       and not Path(p).name.startswith(("_", ".")))
        if not paths:
            raise BatchError(f"input folder {text!r} holds no .csv, .parquet or .jsonl file; "
                             "point at the folder that holds the files, or at the files themselves")
    elif fs.isfile(path):
        paths = [path]
    else:
        raise BatchError(f"input {text!r} does not exist; pass an existing CSV, Parquet or JSON Lines file, "
                         "a folder of them, or a glob")
    files = []
    for p in paths:
        fmt = _SUFFIXES.get(Path(p).suffix.lower())
        if fmt is None:
            raise BatchError(f"input file {_unstrip(fs, p)!r} has suffix {Path(p).suffix!r}; deploykit batch reads "
                             ".csv, .parquet (.pq) and .jsonl (.ndjson): rename it, or convert it")
        info = fs.info(p)
        stamp = str(info.get("ETag") or info.get("mtime") or info.get("LastModified") or info.get("created") or "")
        files.append(InputFile(_unstrip(fs, p), fmt, int(info.get("size") or 0), stamp))
    return files


def _next_line(fh: Any, offset: int, size: int) -> int:
    """The offset just after the first newline at or after ``offset`` (``size`` if none)."""
    fh.seek(offset)
    pos = offset
    while pos < size:
        block = fh.read(1 << 16)
        if not block:
            return size
        nl = int(block.find(b"\n"))
        if nl >= 0:
            return pos + nl + 1
        pos += len(block)
    return size


def plan_units(files: list[InputFile], chunk_bytes: int, storage_options: dict[str, Any] | None = None) -> list[Unit]:
    """Split ``files`` into units of about ``chunk_bytes`` (whole lines; whole Parquet row groups)."""
    units: list[Unit] = []
    for file_index, f in enumerate(files):
        fs, path = _filesystem(f.url, storage_options)
        if f.format == "parquet":
            import pyarrow.parquet as pq

            with fs.open(path, "rb") as fh:
                try:
                    meta = pq.ParquetFile(fh).metadata
                except Exception as exc:  # pyarrow raises ArrowInvalid and OSError for a broken footer
                    raise BatchError(f"input file {f.url!r} is not a readable Parquet file ({exc}); "
                                     "check that it was written completely") from None
            group: list[int] = []
            first = row = size = 0
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                if rg.num_rows == 0:
                    continue
                if not group:
                    first = row
                group.append(g)
                row += rg.num_rows
                size += rg.total_byte_size
                if size >= chunk_bytes:
                    units.append(Unit(len(units), f, file_index, 0, size, row_groups=tuple(group), first_row=first))
                    group, size = [], 0
            if group:
                units.append(Unit(len(units), f, file_index, 0, size, row_groups=tuple(group), first_row=first))
            continue
        with fs.open(path, "rb") as fh:
            header = b""
            start = 0
            if f.format == "csv":
                start = _next_line(fh, 0, f.size)
                fh.seek(0)
                header = fh.read(start)
            while start < f.size:
                end = _next_line(fh, min(start + chunk_bytes, f.size) - 1, f.size) if start + chunk_bytes < f.size \
                    else f.size
                units.append(Unit(len(units), f, file_index, start, end, header=header))
                start = end
    return units


# -- reading a unit --------------------------------------------------------------------------

@dataclass
class Chunk:
    """Rows of one unit: the schema's columns as a payload Table, the kept columns as arrow arrays."""

    table: Any
    keep: dict[str, Any]
    rows: int
    offset: int  # rows of the unit before this chunk


_STR_NA = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})
_TRUE, _FALSE = ("True", "TRUE", "true"), ("False", "FALSE", "false")
_INT_TEXT = re.compile(r"\s*[+-]?\d+\s*")


def csv_column(arr: Any, col: Column) -> Any:
    """A CSV column read as text, typed the way the online CSV codec reads a payload: an empty
    field is null, pandas' NA words are null in non-string columns, numbers and true/false are
    parsed. A value that is not of the column's type stays text, so the schema check names it."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        return dictionary_objects(arr)
    if col.type in ("string", "any", "datetime") or not pa.types.is_string(arr.type):
        return arr.to_numpy(zero_copy_only=False)
    na = pc.is_in(arr, value_set=pa.array(sorted(_STR_NA)))
    arr = pc.if_else(na, pa.scalar(None, pa.string()), arr)
    kinds: list[Any] = {"integer": [pa.int64(), pa.float64()], "float": [pa.float64()]}.get(col.type, [])
    for kind in kinds:
        try:
            typed = pc.cast(arr, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        if typed.null_count == 0:
            return typed.to_numpy()
        if kind == pa.int64():
            import pandas as pd

            return pd.arrays.IntegerArray(typed.fill_null(0).to_numpy(), typed.is_null().to_numpy(zero_copy_only=False))
        return typed.to_numpy(zero_copy_only=False)
    if col.type == "boolean":
        true = pc.is_in(arr, value_set=pa.array(_TRUE))
        false = pc.is_in(arr, value_set=pa.array(_FALSE))
        if pc.all(pc.or_(pc.or_(true, false), pc.is_null(arr))).as_py():
            if arr.null_count == 0:
                return true.to_numpy(zero_copy_only=False)
            import pandas as pd

            return pd.array(pc.if_else(pc.is_null(arr), pa.scalar(None, pa.bool_()), true).to_pylist(), dtype="boolean")
    values = arr.to_pylist()
    out = np.empty(len(values), dtype=object)
    out[:] = [_parse_text(v) for v in values]
    return out


def dictionary_objects(arr: Any) -> Any:
    """A dictionary-encoded arrow column as a numpy object array whose rows share the
    dictionary's Python strings (one object per distinct value, not one per row); null is None."""
    import pyarrow.compute as pc

    values = arr.dictionary.to_numpy(zero_copy_only=False)
    if arr.null_count == 0:
        return values.take(arr.indices.to_numpy())
    out = values.take(arr.indices.fill_null(0).to_numpy())
    out[pc.is_null(arr).to_numpy(zero_copy_only=False)] = None
    return out


def _parse_text(text: str | None) -> Any:
    """One CSV field as the value it spells: an int, a float, true/false, or the text itself."""
    if text is None:
        return None
    if _INT_TEXT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return text


def _read_text(unit: Unit, storage_options: dict[str, Any] | None) -> bytes:
    fs, path = _filesystem(unit.file.url, storage_options)
    with fs.open(path, "rb") as fh:
        fh.seek(unit.start)
        return fh.read(unit.end - unit.start)  # type: ignore[no-any-return]


def read_unit(job: Job, unit: Unit) -> Iterator[Chunk]:
    """The unit's rows in chunks of about BATCH_ROWS rows, columns as the schema check wants them."""
    fmt = unit.file.format
    if fmt == "csv":
        yield from _read_csv(job, unit)
    elif fmt == "parquet":
        yield from _read_parquet(job, unit)
    else:
        yield from _read_jsonl(job, unit)


def _csv_options(job: Job, header: bytes) -> tuple[Any, Any, Any]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = _header_names(header)
    # text columns come dictionary-encoded: rows then share one Python string per distinct value
    types = {c.name: pa.dictionary(pa.int32(), pa.string()) if c.type == "string" else pa.string()
             for c in job.schema.columns if c.type != "any"}
    for name, kind in job.keep_types.items():
        types.setdefault(name, kind)
    wanted = [n for n in names if n in types or n in job.schema.names or n in job.keep_types]
    read = pcsv.ReadOptions(block_size=max(1 << 16, min(job.batch_bytes, 1 << 22)), use_threads=False)
    convert = pcsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                  include_columns=wanted)
    return read, pcsv.ParseOptions(), convert


def _header_names(header: bytes) -> list[str]:
    import csv
    import io

    text = header.decode("utf-8-sig", "replace")
    return next(csv.reader(io.StringIO(text)), [])


def prefetched(chunks: Iterator[Chunk], depth: int = 1) -> Iterator[Chunk]:
    """``chunks``, read ``depth`` ahead in a thread: pyarrow parses and Python builds the next
    chunk's values while the model (which releases the GIL in its tree walks) scores this one.
    Memory stays bounded: at most ``depth`` chunks wait. An error in the reader is raised here."""
    import queue
    import threading

    done = object()
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        # never block once the consumer has stopped (it raised): it will not take this item
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=read, name="deploykit-batch-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _read_csv(job: Job, unit: Unit) -> Iterator[Chunk]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from deploykit.payload import Table

    data = unit.header + _read_text(unit, job.storage_options)
    read, parse, convert = _csv_options(job, unit.header)
    try:
        reader = pcsv.open_csv(pa.BufferReader(data), read_options=read, parse_options=parse,
                               convert_options=convert)
        offset = 0
        for batch in reader:
            cols = {c.name: csv_column(batch.column(c.name), c) for c in job.schema.columns
                    if c.name in batch.schema.names}
            yield Chunk(Table(cols, batch.num_rows), {k: batch.column(k) for k in job.keep}, batch.num_rows, offset)
            offset += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BatchError(f"input file {unit.file.url!r} (bytes {unit.start}-{unit.end}) could not be read as CSV "
                         f"({exc}); every row needs the header's fields, and a kept column keeps the type of the "
                         "first rows (pass --keep without it otherwise)") from None


def _read_parquet(job: Job, unit: Unit) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    from deploykit.payload import Table

    fs, path = _filesystem(unit.file.url, job.storage_options)
    columns = list(dict.fromkeys([n for n in job.schema.names] + list(job.keep)))
    text = [c.name for c in job.schema.columns if c.type == "string"]
    with fs.open(path, "rb") as fh:
        pf = pq.ParquetFile(fh, read_dictionary=text)
        present = set(pf.schema_arrow.names)
        offset = 0
        for batch in pf.iter_batches(batch_size=job.batch_rows, row_groups=list(unit.row_groups),
                                     columns=[c for c in columns if c in present]):
            frame = batch.select([n for n in job.schema.names if n in present]).to_pandas()
            keep = {k: batch.column(k) for k in job.keep}
            yield Chunk(Table.from_frame(frame), keep, batch.num_rows, offset)
            offset += batch.num_rows


def _read_jsonl(job: Job, unit: Unit) -> Iterator[Chunk]:
    from deploykit.errors import PayloadError
    from deploykit.payload import Table, decode_table

    lines = _read_text(unit, job.storage_options).splitlines()
    offset = 0
    for at in range(0, len(lines), job.batch_rows):
        records = []
        for i, line in enumerate(lines[at:at + job.batch_rows]):
            if not line.strip():
                raise BatchError(f"input file {unit.file.url!r} has an empty line (line {_line_hint(job, unit, at + i)}); "
                                 "JSON Lines holds one object per line: remove it")
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise BatchError(f"input file {unit.file.url!r} line {_line_hint(job, unit, at + i)} is not JSON "
                                 f"({exc}); write one JSON object per line") from None
        try:
            table = decode_table(records, fmt="records")
        except PayloadError as exc:
            raise BatchError(f"input file {unit.file.url!r} (rows from line {_line_hint(job, unit, at)}): {exc}") from None
        schema_cols = {n: table.columns[n] for n in job.schema.names if n in table.columns}
        keep = {k: table.columns.get(k, [None] * table.rows) for k in job.keep}
        yield Chunk(Table(schema_cols, table.rows), keep, table.rows, offset)
        offset += table.rows


_rows_before_cache: dict[tuple[str, int], int] = {}


def _rows_before(job: Job, unit: Unit) -> int:
    """Data rows of the unit's file before the unit (counted only when a row must be named)."""
    if unit.first_row is not None:
        return unit.first_row
    key = (unit.file.url, unit.start)
    if key not in _rows_before_cache:
        _rows_before_cache[key] = _count_rows_before(job, unit)
    return _rows_before_cache[key]


def _count_rows_before(job: Job, unit: Unit) -> int:
    fs, path = _filesystem(unit.file.url, job.storage_options)
    count = 0
    with fs.open(path, "rb") as fh:
        fh.seek(len(unit.header))
        left = unit.start - len(unit.header)
        while left > 0:
            block = fh.read(min(left, 1 << 22))
            if not block:
                break
            count += block.count(b"\n")
            left -= len(block)
    return count


def _line_hint(job: Job, unit: Unit, row_in_unit: int) -> int:
    return _rows_before(job, unit) + row_in_unit + 1


# -- scoring a chunk -------------------------------------------------------------------------

class _ModelScorer:
    """One model pass per chunk, in numpy: labels (and their class positions) and probabilities.

    What the model can do is decided by :class:`deploykit.inference.ModelScorer`, the scorer
    the online server uses (the frame or a numpy array, ``predict_proba``, whether ``predict``
    is the arg-max of the probabilities); this keeps its outputs as arrays instead of building
    Predictions, and checks the arg-max shortcut against ``predict`` on the first rows.
    """

    def __init__(self, job: Job, model: Any) -> None:
        from deploykit.artifact import Artifact
        from deploykit.inference import ModelScorer

        online = ModelScorer(Artifact(Path(job.source), job.sha256, model, job.framework, job.framework_version,
                                      job.schema, job.flavor, job.source))
        self.model = model
        self.use_frame = online.use_frame
        self.has_proba = online.has_proba
        self.argmax = online.argmax_classes
        self.checked = False
        #: the last call's labels as positions in ``classes_`` (the arg-max), when known
        self.codes: Any = None

    def __call__(self, frame: Any) -> tuple[Any, Any]:
        import numpy as np

        X = frame if self.use_frame else frame.to_numpy()
        proba = None
        if self.has_proba:
            try:
                proba = self.model.predict_proba(X)
            except (AttributeError, NotImplementedError):  # e.g. SVC(probability=False)
                self.has_proba, self.argmax = False, None
        self.codes = None
        if proba is not None and self.argmax is not None:
            self.codes = np.argmax(proba, axis=1)
            labels = self.argmax.take(self.codes)
            if not self.checked:  # a few rows tell whether predict is the arg-max here
                self.checked = True
                head = X.iloc[:256] if hasattr(X, "iloc") else X[:256]
                if not np.array_equal(np.asarray(self.model.predict(head)), labels[:256]):
                    self.argmax = self.codes = None
                    labels = self.model.predict(X)
        else:
            labels = self.model.predict(X)
        if type(labels).__name__ == "DataFrame":  # an MLflow pyfunc may answer with a table
            labels = labels.iloc[:, 0]
        return np.asarray(labels), proba


_models: dict[str, Any] = {}


def register_model(job: Job, model: Any) -> None:
    """Make ``model`` the one this process scores ``job`` with (engines call it once per worker)."""
    _models[job.sha256] = _ModelScorer(job, model)


def _scorer(job: Job) -> Any:
    if job.score is not None:
        return job.score
    scorer = _models.get(job.sha256)
    if scorer is None:
        from deploykit.artifact import load_artifact

        artifact = load_artifact(job.source, job.schema)
        if artifact.sha256 != job.sha256:
            raise BatchError(f"model {job.source!r} changed during the run (sha256 {artifact.sha256[:12]}, the run "
                             f"started with {job.sha256[:12]}); run again with --overwrite")
        register_model(job, artifact.model)
        scorer = _models[job.sha256]
    return scorer


def _located(job: Job, unit: Unit, chunk: Chunk, problem: Mapping[str, Any], alive: Any) -> dict[str, Any]:
    """A schema problem with the file and the row (1-based data row of the file) it came from."""
    row = problem.get("row")
    out = dict(problem)
    out["file"] = unit.file.url
    if row is not None:
        absolute = _rows_before(job, unit) + chunk.offset + int(alive[row]) + 1
        out["row"] = absolute
        message = re.sub(r"^column (.+?) row \d+:", r"column \1:", problem.get("message") or "")
        line = f" (line {absolute + 1})" if unit.file.format == "csv" else \
            f" (line {absolute})" if unit.file.format == "jsonl" else ""
        out["message"] = f"{unit.file.url} row {absolute}{line}: {message}"
    else:
        out["message"] = f"{unit.file.url}: {problem.get('message')}"
    return out


#: Schema problems that only count further problems (the check lists a few rows per column).
_MORE = ("more rows", "more problems")


def _check(job: Job, unit: Unit, chunk: Chunk, problems: list[dict[str, Any]]) -> tuple[dict[str, Any], Any]:
    """The chunk's checked columns and the positions of the rows that passed.

    A bad row stops the run (``fail``: SchemaError naming file, row, column and value) or is
    left out (``skip``/``null``: its problems are appended to ``problems``). The schema check
    names at most a few rows per column, so the check repeats without them until it passes.
    """
    import numpy as np

    from deploykit.payload import Table

    alive = np.arange(chunk.rows)
    columns = chunk.table.columns
    while True:
        table = Table(columns, len(alive))
        try:
            return job.schema.check(table, allow_extra_columns=True), alive
        except SchemaError as exc:
            located = [_located(job, unit, chunk, p, alive) for p in exc.problems if p.get("error") not in _MORE]
            if any(p.get("row") is None for p in located) or job.on_error == "fail" or not located:
                shown = located[:5]
                more = f" and {len(exc.problems) - len(shown)} more" if len(exc.problems) > len(shown) else ""
                fix = "" if any(p.get("row") is None for p in located) else \
                    "; fix those rows, or pass --on-error skip (leave them out) or --on-error null (null predictions)"
                raise SchemaError("input does not fit the model's schema: " + "; ".join(p["message"] for p in shown)
                                  + more + fix, cast("list[Problem]", located)) from None
            problems.extend(located)
            bad = np.zeros(len(alive), dtype=bool)
            bad[[row for p in exc.problems if (row := p.get("row")) is not None]] = True
            alive = alive[~bad]
            columns = {name: _take(values, ~bad) for name, values in columns.items()}


def _take(values: Any, mask: Any) -> Any:
    import numpy as np

    if isinstance(values, list):
        array = np.empty(len(values), dtype=object)
        array[:] = values
        values = array
    return values[mask]


#: Kept columns the schema types are written in its type, as the model saw them.
_ARROW_TYPES = {"integer": "int64", "float": "float64", "string": "string", "boolean": "bool_"}


def _out_table(job: Job, chunk: Chunk, columns: dict[str, Any], labels: Any, proba: Any, alive: Any,
               codes: Any = None, classes: Any = None) -> Any:
    """The part rows of one chunk: kept columns, ``prediction``, ``probability_<class>``.

    ``columns`` and the model outputs hold the rows in ``alive``; ``skip`` writes only those,
    ``null`` writes every row with nulls where a row was bad."""
    import numpy as np
    import pyarrow as pa

    out_schema = job.output_schema
    every = len(alive) == chunk.rows
    spread = None  # null mode with bad rows: output row -> position among the good rows, or null
    if job.on_error == "null" and not every:
        where = np.full(chunk.rows, -1, dtype=np.int64)
        where[alive] = np.arange(len(alive))
        spread = pa.array(where, mask=where < 0)
    arrays = []
    for name in job.keep:
        kind = out_schema.field(name).type
        raw = chunk.keep[name]
        if name in job.typed_keep:
            if every and isinstance(raw, pa.Array) and raw.type == kind:
                arrays.append(raw)
                continue
            if every and isinstance(raw, pa.Array) and pa.types.is_dictionary(raw.type) and raw.type.value_type == kind:
                arrays.append(raw.cast(kind))
                continue
            typed = pa.array(columns[name], type=kind, from_pandas=True)
            arrays.append(typed if spread is None else typed.take(spread))
            continue
        if not isinstance(raw, (pa.Array, pa.ChunkedArray)):
            raw = pa.array(raw if isinstance(raw, list) else list(raw), from_pandas=True)
        if job.on_error == "skip" and not every:
            raw = raw.take(pa.array(alive))
        arrays.append(_cast(raw, kind, name, job))
    label_type = out_schema.field("prediction").type
    if codes is not None and classes is not None:  # labels by position: no Python object per row
        outputs: list[Any] = [pa.array(classes, type=label_type).take(pa.array(codes))]
    else:
        outputs = [pa.array(np.asarray(labels), type=label_type, from_pandas=True)]
    for j in range(len(out_schema) - len(job.keep) - 1):
        outputs.append(pa.array(proba[:, j] if proba is not None else np.full(len(alive), np.nan), type=pa.float64()))
    for array in outputs:
        arrays.append(array if spread is None else array.take(spread))
    return pa.Table.from_arrays(arrays, schema=out_schema)


def _cast(values: Any, kind: Any, name: str, job: Job) -> Any:
    import pyarrow as pa

    if values.type == kind:
        return values
    try:
        return values.cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise BatchError(f"kept column {name!r} holds {values.type} values where the first rows held {kind}; "
                         "make the column one type in every file, or leave it out of --keep") from None


# -- the job ---------------------------------------------------------------------------------

@dataclass
class Job:
    """Everything a worker needs to score units: picklable (``score`` excepted, in-process only)."""

    source: str
    sha256: str
    flavor: str
    schema: Schema
    keep: list[str]
    on_error: str
    output: str
    output_format: str
    output_schema: Any = None
    keep_types: dict[str, Any] = field(default_factory=dict)
    typed_keep: tuple[str, ...] = ()
    batch_rows: int = BATCH_ROWS
    batch_bytes: int = 1 << 22
    storage_options: dict[str, Any] | None = None
    framework: str = ""
    framework_version: str | None = None
    score: Callable[[Any], tuple[Any, Any]] | None = None

    def part_url(self, unit: Unit, temporary: bool = False) -> str:
        """Where ``unit``'s part goes (its temporary name while being written)."""
        fs, base = _filesystem(self.output, self.storage_options)
        name = f"{unit.part}.{self.output_format}"
        if temporary:
            name = f".{name}.tmp-{os.getpid()}"
        return _unstrip(fs, _join(fs, base, name))


@dataclass
class PartResult:
    """What scoring one unit gave: its part file and row counts, and the problems of bad rows."""

    unit: int
    part: str
    rows_in: int
    rows_out: int
    rows_rejected: int
    bytes: int
    problems: list[dict[str, Any]] = field(default_factory=list)


def run_unit(job: Job, unit: Unit, on_rows: Callable[[int], None] | None = None) -> PartResult:
    """Read, check, score and write one unit to its part file (temporary name, renamed when complete)."""
    scorer = _scorer(job)
    tmp, final = job.part_url(unit, temporary=True), job.part_url(unit)
    fs, tmp_path = _filesystem(tmp, job.storage_options)
    _, final_path = _filesystem(final, job.storage_options)
    problems: list[dict[str, Any]] = []
    rows_in = rows_out = 0
    try:
        with fs.open(tmp_path, "wb") as sink:
            writer = _writer(job, sink)
            try:
                for chunk in prefetched(read_unit(job, unit)):
                    import pandas as pd

                    columns, alive = _check(job, unit, chunk, problems)
                    if len(alive):
                        frame = pd.DataFrame(columns, copy=False)
                        try:
                            labels, proba = scorer(frame)
                        except Exception as exc:  # the model's own error: name the rows it was given
                            first = _rows_before(job, unit) + chunk.offset + 1
                            raise BatchError(f"the model raised on {unit.file.url} rows {first}-{first + chunk.rows - 1} "
                                             f"({type(exc).__name__}: {exc}); check those rows") from None
                    else:
                        labels, proba = [], None
                    if proba is None and len(job.output_schema) > len(job.keep) + 1:
                        import numpy as np

                        proba = np.full((len(alive), len(job.output_schema) - len(job.keep) - 1), np.nan)
                    codes = getattr(scorer, "codes", None) if len(alive) else None
                    classes = getattr(scorer, "argmax", None)
                    table = _out_table(job, chunk, columns, labels, proba, alive, codes,
                                       None if classes is None else classes.tolist())
                    writer.write_table(table)
                    rows_in += chunk.rows
                    rows_out += table.num_rows
                    if on_rows is not None:
                        on_rows(chunk.rows)
            finally:
                writer.close()
        fs.mv(tmp_path, final_path)
    except BaseException:
        try:
            fs.rm(tmp_path)
        except (OSError, FileNotFoundError):
            pass
        raise
    return PartResult(unit.index, final.rsplit("/", 1)[-1], rows_in, rows_out, rows_in - rows_out
                      if job.on_error == "skip" else len({(p["file"], p["row"]) for p in problems}), unit.size,
                      problems[:MAX_REPORTED_PROBLEMS])


def _writer(job: Job, sink: Any) -> Any:
    if job.output_format == "csv":
        import pyarrow.csv as pcsv

        return pcsv.CSVWriter(sink, job.output_schema)
    import pyarrow as pa
    import pyarrow.parquet as pq

    # dictionary pages pay off for labels and repeated text, not for probabilities or ids
    text = [f.name for f in job.output_schema if pa.types.is_string(f.type) or pa.types.is_boolean(f.type)]
    return pq.ParquetWriter(sink, job.output_schema, compression="snappy", use_dictionary=text or False)


# -- output folder and report ----------------------------------------------------------------

@dataclass
class BatchReport:
    """The record of one batch run, as written to ``_report.json`` beside the parts."""

    status: str
    engine: str
    source: str
    model_sha256: str
    input: list[str]
    output: str
    output_format: str
    on_error: str
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    parts: list[str] = field(default_factory=list)
    parts_resumed: int = 0
    seconds: float = 0.0
    started_at: str = ""
    finished_at: str = ""
    versions: dict[str, Any] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    part_rows: dict[str, list[int]] = field(default_factory=dict)
    report: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-safe data (what ``--json`` prints and ``_report.json`` holds)."""
        return dataclasses.asdict(self)

    def summary(self) -> dict[str, Any]:
        """The report without the per-part details (what ``deploykit batch --json`` prints)."""
        out = self.to_dict()
        out.pop("plan")
        out.pop("part_rows")
        out["parts"] = len(self.parts)
        return out


def _now() -> str:
    from deploykit.deployment import now

    return now()


class _Output:
    """The output folder: refused if it holds anything unless overwriting or resuming the same plan."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None) -> None:
        self.url = url
        self.fs, self.path = _filesystem(url, storage_options)

    def _report_path(self) -> str:
        return _join(self.fs, self.path, REPORT_NAME)

    def entries(self) -> list[str]:
        try:
            if not self.fs.isdir(self.path):
                if self.fs.exists(self.path):
                    raise BatchError(f"output {self.url!r} is a file; pass a folder (it is created)")
                return []
            return [p for p in self.fs.ls(self.path, detail=False) if p.rstrip("/") != self.path.rstrip("/")]
        except FileNotFoundError:
            return []

    def prepare(self, plan: dict[str, Any], resume: bool, overwrite: bool) -> dict[str, list[int]]:
        """Make the folder ready; return the parts (name -> rows) a resumed run keeps."""
        entries = self.entries()
        if entries and overwrite:
            self.fs.rm(self.path, recursive=True)
            entries = []
        if entries and not resume:
            raise BatchError(f"output folder {self.url!r} already holds {len(entries)} file(s); pass --overwrite to "
                             "replace them, --resume to finish an interrupted run, or another folder")
        kept: dict[str, list[int]] = {}
        if entries:
            previous = self.read_report()
            if previous is None:
                raise BatchError(f"output folder {self.url!r} holds files but no {REPORT_NAME} of a deploykit batch "
                                 "run, so there is nothing to resume; pass --overwrite or another folder")
            if previous.get("plan") != plan:
                changed = sorted(k for k in set(plan) | set(previous.get("plan", {}))
                                 if plan.get(k) != previous.get("plan", {}).get(k))
                raise BatchError(f"output folder {self.url!r} was written by a different run ({', '.join(changed)} "
                                 "changed), so resuming would mix outputs; pass --overwrite to start again")
            recorded = previous.get("part_rows") or {}
            names = {p.rstrip("/").rsplit("/", 1)[-1]: p for p in entries}
            for name, path in names.items():
                if name.startswith("."):  # a part being written when the run died
                    self.fs.rm(path)
                elif name.startswith("part-") and name in recorded:
                    kept[name] = recorded[name]
                elif name.startswith("part-"):  # renamed, but killed before its counts were recorded
                    self.fs.rm(path)
        if not self.fs.exists(self.path):
            self.fs.makedirs(self.path, exist_ok=True)
        return kept

    def read_report(self) -> dict[str, Any] | None:
        try:
            with self.fs.open(self._report_path(), "rb") as fh:
                data = json.loads(fh.read())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_report(self, report: BatchReport) -> None:
        """Write ``_report.json`` whole: a temporary name, then a rename."""
        tmp = _join(self.fs, self.path, f".{REPORT_NAME}.tmp-{os.getpid()}")
        with self.fs.open(tmp, "wb") as fh:
            fh.write(json.dumps(report.to_dict(), indent=1, default=str).encode())
        self.fs.mv(tmp, self._report_path())


# -- the model side: artifact, recorded deployment or a target's own batch --------------------

@dataclass
class _Model:
    source: str
    sha256: str
    flavor: str
    schema: Schema
    classes: list[Any] | None
    has_proba: bool
    framework: str
    framework_version: str | None
    artifact: Artifact | None = None
    score: Callable[[Any], tuple[Any, Any]] | None = None


def _from_artifact(artifact: Artifact) -> _Model:
    model = artifact.model
    has_proba = callable(getattr(model, "predict_proba", None)) and artifact.flavor != "mlflow"
    return _Model(str(artifact.path), artifact.sha256, artifact.flavor, artifact.schema, artifact.classes,
                  has_proba and artifact.classes is not None, artifact.framework, artifact.framework_version, artifact)


def _resolve_source(source: Any, target: str | None, credentials: Any, metadata: Any,
                    progress: Callable[[str], None] | None) -> _Model:
    """SOURCE as the model to score: an Artifact, a model file or MLflow model, or a recorded deployment."""
    from deploykit.artifact import Artifact, load_artifact

    if isinstance(source, Artifact):
        return _from_artifact(source)
    text = str(source)
    looks_like_path = Path(text).expanduser().exists() or "/" in text or text.startswith(("models:/", "runs:/")) \
        or Path(text).suffix in (".joblib", ".pkl", ".pickle")
    if target is None and looks_like_path:
        return _from_artifact(load_artifact(text, None, credentials))
    from deploykit.metadata import DEFAULT_PATH, MetadataStore

    state = MetadataStore(metadata if metadata is not None else DEFAULT_PATH).read()
    try:
        record = state.get(text, target)
    except Exception as exc:
        if looks_like_path:
            raise
        raise BatchError(f"SOURCE {text!r} is neither a model file nor a recorded deployment ({exc}); pass a "
                         "joblib/pickle file, an MLflow model, or the name of a deployment in metadata.yaml") from None
    if target is not None:
        scored = _target_batch(record, target, credentials, metadata, progress)
        if scored is not None:
            return scored
    kept = record.ids.get("model_file")
    if kept:
        schema_file = record.ids.get("schema_file")
        artifact = load_artifact(kept, schema_file if schema_file and Path(schema_file).is_file() else None)
        if record.model_sha256 and artifact.sha256 != record.model_sha256:
            raise BatchError(f"the kept model of {record.name!r} on {record.target} ({kept}) has sha256 "
                             f"{artifact.sha256[:12]}, not the recorded {record.model_sha256[:12]}; deploy it again")
        return _from_artifact(artifact)
    uri = record.ids.get("model_uri")
    if uri:
        return _from_artifact(load_artifact(uri, None, credentials))
    raise BatchError(f"deployment {record.name!r} on {record.target} keeps no model file deploykit can score "
                     f"locally; pass --target {record.target} to use the platform's own batch jobs if it has "
                     "them, or pass the model file as SOURCE")


def _target_batch(record: Any, target: str, credentials: Any, metadata: Any,
                  progress: Callable[[str], None] | None) -> _Model | None:
    """The target's own batch (``BatchScorer``) for a recorded deployment, or None if it has none."""
    from deploykit.lifecycle import open_deployment, save_ids
    from deploykit.schema import Column, Schema
    from deploykit.target import BatchScorer

    deployment, tgt = open_deployment(record.name, target=target, credentials=credentials, metadata=metadata,
                                      progress=progress)
    if not isinstance(tgt, BatchScorer):
        return None
    import numpy as np

    timeout = 600.0

    def score(frame: Any) -> tuple[Any, Any]:
        before = dict(deployment.ids)
        predictions = tgt.score_batch(deployment, frame, timeout)
        if deployment.ids != before:  # e.g. Watson's batch deployment, created on first use
            save_ids(deployment, metadata=metadata)
        proba = None if predictions.probabilities is None else np.asarray(predictions.probabilities, dtype=float)
        return np.asarray(predictions.labels, dtype=object), proba

    classes = record.extra.get("classes")
    schema = Schema([Column(c, "any", nullable=True) for c in deployment.columns])
    return _Model(f"{record.name} on {record.target}", record.model_sha256 or "", "target", schema, classes,
                  classes is not None, "", None, score=score)


# -- first rows: the output schema ------------------------------------------------------------

def _first_rows(files: list[InputFile], storage_options: dict[str, Any] | None) -> Any:
    """The first rows of the first file as an arrow table, column types inferred by pyarrow
    (only these rows decide the kept columns' types: every later row is cast to them)."""
    import io

    import pyarrow as pa

    f = files[0]
    fs, path = _filesystem(f.url, storage_options)
    with fs.open(path, "rb") as fh:
        if f.format == "parquet":
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(fh)
            batch = next(pf.iter_batches(batch_size=1000), None)
            return pa.Table.from_batches([batch]) if batch is not None else pf.schema_arrow.empty_table()
        head = fh.read(1 << 20)
    head = head[: head.rfind(b"\n") + 1] if b"\n" in head else head
    if f.format == "csv":
        import pyarrow.csv as pcsv

        if not head.strip():
            raise BatchError(f"input file {f.url!r} is empty; it needs a header line and rows")
        try:
            return pcsv.read_csv(io.BytesIO(head), convert_options=pcsv.ConvertOptions(null_values=[""],
                                                                                     strings_can_be_null=True))
        except pa.ArrowInvalid as exc:
            raise BatchError(f"input file {f.url!r} could not be read as CSV ({exc})") from None
    records = [json.loads(line) for line in head.splitlines()[:1000] if line.strip()]
    return pa.Table.from_pylist(records) if records else pa.table({})


def _check_columns(files: list[InputFile], schema: Schema, storage_options: dict[str, Any] | None) -> None:
    """Every file has every column the model needs (CSV: in its header; Parquet: in its schema)."""
    needed = schema.names
    for f in files:
        fs, path = _filesystem(f.url, storage_options)
        if f.format == "jsonl":
            continue  # records may omit a nullable key; the row check names what is missing
        with fs.open(path, "rb") as fh:
            if f.format == "parquet":
                import pyarrow.parquet as pq

                names = list(pq.ParquetFile(fh).schema_arrow.names)
            else:
                names = _header_names(fh.readline())
        missing = [n for n in needed if n not in names]
        if not missing:
            continue
        if f.format == "csv" and names and not set(names) & set(needed):
            raise BatchError(f"CSV file {f.url!r} has no header line (its first line is {','.join(names)[:120]!r}); "
                             f"add a first line naming the columns: {','.join(needed)}")
        raise BatchError(f"input file {f.url!r} lacks column(s) {', '.join(map(repr, missing))} that the model needs "
                         f"(it has {', '.join(names)}); add them, or score the file with a model that does not")


def _output_schema(job: Job, model: _Model, head: Any) -> Any:
    import pyarrow as pa

    fields = []
    typed = {c.name: getattr(pa, _ARROW_TYPES[c.type])() for c in job.schema.columns if c.type in _ARROW_TYPES}
    for name in job.keep:
        kind = typed.get(name) or (head.schema.field(name).type if name in head.schema.names else pa.string())
        fields.append(pa.field(name, pa.string() if pa.types.is_null(kind) else kind))
    label_type: Any = pa.float64()
    if model.classes is not None:
        label_type = pa.array(model.classes).type
    elif model.score is None and head.num_rows:
        label_type = _probe_label_type(job, model, head)
    elif model.score is not None and head.num_rows:  # a target's record without classes: ask the platform
        labels, proba = model.score(head.select([n for n in job.schema.names if n in head.schema.names])
                                    .slice(0, 5).to_pandas())
        label_type = pa.array(labels, from_pandas=True).type
        if proba is not None:
            model.classes, model.has_proba = [str(i) for i in range(proba.shape[1])], True
    fields.append(pa.field("prediction", label_type))
    for c in (model.classes or []) if model.has_proba else []:
        fields.append(pa.field(f"probability_{c}", pa.float64()))
    return pa.schema(fields)


def _probe_label_type(job: Job, model: _Model, head: Any) -> Any:
    import pyarrow as pa

    from deploykit.payload import Table

    frame = head.select([n for n in job.schema.names if n in head.schema.names]).slice(0, 100).to_pandas()
    try:
        columns = job.schema.check(Table.from_frame(frame), allow_extra_columns=True)
        import pandas as pd

        labels, _ = _ModelScorer(job, model.artifact.model if model.artifact else None)(
            pd.DataFrame(columns, copy=False))
        return pa.array(labels, from_pandas=True).type
    except Exception:  # the real run names the bad rows; the probe only wants a type
        return pa.float64()


# -- the run ---------------------------------------------------------------------------------

def _versions() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, Any] = {"python": ".".join(map(str, sys.version_info[:3]))}
    for dist in ("deploykit", "numpy", "pandas", "pyarrow", "scikit-learn"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _parse_bytes(value: int | str) -> int:
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]i?[bB]?|[bB])?\s*", value)
    if not match:
        raise BatchError(f"chunk size {value!r} is not a size; write it like 16MB, 512KB or 1048576")
    unit = (match.group(2) or "b").lower()[:1]
    return int(float(match.group(1)) * {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit])


class _Progress:
    """Rows, rows/s and ETA (by input bytes) on a terminal, at most twice a second."""

    def __init__(self, total_bytes: int, show: Callable[[str], None] | None) -> None:
        self.total = max(1, total_bytes)
        self.show = show
        self.rows = 0
        self.bytes = 0
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, rows: int = 0, nbytes: int = 0, force: bool = False) -> None:
        self.rows += rows
        self.bytes += nbytes
        now = time.monotonic()
        if self.show is None or (not force and now - self.last < 0.5):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        rate = self.rows / elapsed
        done = min(self.bytes / self.total, 1.0)
        eta = elapsed * (1 - done) / done if done > 0 else None
        eta_text = f"{int(eta // 60)}:{int(eta % 60):02d}" if eta is not None else "?"
        self.show(f"{self.rows:,} rows  {rate:,.0f} rows/s  {done:5.1%}  ETA {eta_text}")


def batch(source: Any, input: str | Path, output: str | Path, *, engine: str = "local",
          keep: Sequence[str] | None = None, on_error: str = "fail", output_format: str = "parquet",
          resume: bool = False, overwrite: bool = False, workers: int | None = None, address: str | None = None,
          target: str | None = None, credentials: str | Path | None = None, metadata: str | Path | None = None,
          progress: Callable[[str], None] | None = None, chunk_size: int | str = DEFAULT_CHUNK_BYTES,
          batch_rows: int = BATCH_ROWS, storage_options: dict[str, Any] | None = None,
          on_rows: Callable[[int], None] | None = None) -> BatchReport:
    """Score every row of ``input`` with ``source`` into part files in the folder ``output``.

    ``source`` is a model file, an MLflow model (directory or ``models:/`` URI), an Artifact,
    or the name of a recorded deployment (its kept model file is scored, so batch scores what
    serves online); with ``target``, a deployment whose target runs its own batch jobs (Watson)
    is scored there. ``input`` is a CSV, Parquet or JSON Lines file, a folder or a glob, local
    or any fsspec URL (``s3://``). Each part holds the ``keep`` columns (default: every input
    column), ``prediction`` and, for classifiers, ``probability_<class>`` per class.

    ``on_error``: ``fail`` stops at the first bad row (SchemaError naming file, row, column and
    value), ``skip`` leaves bad rows out, ``null`` writes them with null predictions. An output
    folder with files is refused unless ``overwrite`` (everything in it is replaced) or
    ``resume`` (the parts of an interrupted run of the same plan are kept). ``engine`` is
    ``local`` (``workers`` processes) or ``dask`` (``address`` of a scheduler, else a
    LocalCluster of ``workers`` workers, one per core by default), or any engine a plugin
    registers. ``on_rows`` is called with each chunk's row count once that chunk is written
    (the local engine with one worker); an exception it raises stops the run (how the local
    server's jobs are cancelled between chunks).
    """
    started, wall = time.monotonic(), _now()
    if on_error not in ON_ERROR:
        raise BatchError(f"on_error is {on_error!r}; use one of {', '.join(ON_ERROR)}")
    if output_format not in OUTPUT_FORMATS:
        raise BatchError(f"output format {output_format!r} is not known; use one of {', '.join(OUTPUT_FORMATS)}")
    if resume and overwrite:
        raise BatchError("pass either --resume (keep the parts of an interrupted run) or --overwrite (start again), "
                         "not both")
    if workers is not None and workers < 1:
        raise BatchError(f"workers is {workers}; pass 1 or more")
    info = get_engines().info(engine)
    engine_cls = info.load()
    files = find_inputs(input, storage_options)
    model = _resolve_source(source, target, credentials, metadata, progress)
    if model.score is not None and (engine != "local" or (workers or 1) != 1):
        raise BatchError(f"--target {target} scores through the platform's own batch jobs; --engine and --workers "
                         "do not apply there: leave them out")
    _check_columns(files, model.schema, storage_options)
    chunk_bytes = _parse_bytes(chunk_size)
    units = plan_units(files, chunk_bytes, storage_options)
    if not units:
        raise BatchError(f"input {str(input)!r} has 0 rows (only a header, or empty files); nothing to score: "
                         "check the export that produced it")
    head = _first_rows(files, storage_options)
    kept_cols = list(keep) if keep else list(head.schema.names)
    missing_keep = [k for k in kept_cols if k not in head.schema.names]
    if missing_keep:
        raise BatchError(f"--keep names column(s) {', '.join(map(repr, missing_keep))} that {files[0].url!r} lacks "
                         f"(it has {', '.join(head.schema.names)}); keep columns the input has")
    reserved = [k for k in kept_cols if k == "prediction" or k.startswith("probability_")]
    if reserved:
        raise BatchError(f"input column(s) {reserved} clash with the output's prediction columns; leave them out "
                         "with --keep COLUMN ...")
    job = Job(model.source, model.sha256, model.flavor, model.schema, kept_cols, on_error, str(output),
              output_format, batch_rows=batch_rows, batch_bytes=min(chunk_bytes, 1 << 22),
              storage_options=storage_options, framework=model.framework,
              framework_version=model.framework_version, score=model.score)
    job.output_schema = _output_schema(job, model, head)
    job.keep_types = {f.name: f.type for f in job.output_schema if f.name in kept_cols}
    job.typed_keep = tuple(k for k in kept_cols
                           if any(c.name == k and c.type in _ARROW_TYPES for c in model.schema.columns))
    plan = {"input": [dataclasses.asdict(f) for f in files], "chunk_bytes": chunk_bytes, "model_sha256": model.sha256,
            "keep": kept_cols, "on_error": on_error, "output_format": output_format,
            "columns": model.schema.names}
    out = _Output(str(output), storage_options)
    kept_parts = out.prepare(plan, resume, overwrite)
    if model.artifact is not None:
        register_model(job, model.artifact.model)
    report = BatchReport("running", engine, model.source, model.sha256, [f.url for f in files], str(output),
                         output_format, on_error, started_at=wall, plan=plan, part_rows=dict(kept_parts),
                         parts_resumed=len(kept_parts))
    part_name = {u.index: f"{u.part}.{output_format}" for u in units}
    todo = [u for u in units if part_name[u.index] not in kept_parts]
    meter = _Progress(sum(u.size for u in units), progress)
    meter.update(sum(kept_parts[part_name[u.index]][0] for u in units if part_name[u.index] in kept_parts),
                 sum(u.size for u in units if part_name[u.index] in kept_parts))
    out.write_report(report)
    runner = engine_cls(workers=workers, address=address)

    def on_part(result: PartResult) -> None:
        report.part_rows[result.part] = [result.rows_in, result.rows_out, result.rows_rejected]
        if len(report.problems) < MAX_REPORTED_PROBLEMS:
            report.problems.extend(result.problems[: MAX_REPORTED_PROBLEMS - len(report.problems)])
        meter.update(0 if getattr(runner, "streams_rows", False) else result.rows_in, result.bytes)
        out.write_report(report)

    if getattr(runner, "streams_rows", False):
        def rows_done(rows: int) -> None:
            meter.update(rows)
            if on_rows is not None:
                on_rows(rows)

        runner.on_rows = rows_done
    try:
        runner.run(job, todo, on_part)
        engine_versions = runner.versions()
    except BaseException:
        report.status, report.finished_at = "failed", _now()
        report.seconds = round(time.monotonic() - started, 3)
        try:
            out.write_report(report)
        except OSError:
            pass
        raise
    meter.update(force=True)
    if progress is not None:
        progress("")
    report.parts = sorted(report.part_rows)
    report.rows_in = sum(r[0] for r in report.part_rows.values())
    report.rows_out = sum(r[1] for r in report.part_rows.values())
    report.rows_rejected = sum(r[2] for r in report.part_rows.values())
    report.versions = {**_versions(), **engine_versions}
    report.status, report.finished_at = "succeeded", _now()
    report.seconds = round(time.monotonic() - started, 3)
    _, report_path = out.fs, out._report_path()
    report.report = _unstrip(out.fs, report_path)
    if report.rows_in == 0:
        report.status = "failed"
        out.write_report(report)
        raise BatchError(f"input {str(input)!r} has 0 rows (only a header, or blank lines); nothing to score: "
                         "check the export that produced it")
    out.write_report(report)
    return report


class _CallableModule(types.ModuleType):
    """``deploykit.batch`` is this module once anything imports it (the import system binds a
    submodule to its package's attribute), so calling the module calls :func:`batch`."""

    def __call__(self, *args: Any, **kwargs: Any) -> BatchReport:
        return batch(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
