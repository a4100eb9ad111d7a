"""Sample files in, alert events out, for ``ocad detect`` / ``ocad calibrate --data``.

Reading is streaming and columnar: :func:`iter_chunks` yields :class:`ColumnChunk` s of at most
about ``chunk_rows`` rows, ready for :meth:`~ocad.core.Monitor.observe_columns`, so peak memory
follows the chunk, not the file (docs/performance.md, "Reading files").

Inputs (``-`` is standard input):

- CSV, optionally gzip-compressed (``.gz`` or detected by its magic bytes), wide
  (``endpoint_id, ts, <metric>...``) or long (``endpoint_id, ts, metric, value``). With
  pyarrow (the ``io`` extra) it is parsed by ``pyarrow.csv``'s streaming reader, else by the
  standard library. Metric cells are parsed as numbers; an empty / ``nan`` / ``null`` cell is
  missing; a cell that is not a number is passed on as text, so validation rejects and counts
  it (``wrong_type``) instead of the reader guessing.
- Parquet (``io`` extra): a file, a directory of files, or a hive-partitioned dataset
  (``site=paris/part-0.parquet``; partition columns become columns), read row group by row
  group: memory follows the larger of ``chunk_rows`` and the file's row groups.
  Parquet on standard input is read into memory first (the format needs to seek).

Order: each chunk is split into ticks by the Monitor, so rows inside a chunk may come in any
order. Across chunks, a sample older than its endpoint's last one is dropped and counted
(``out_of_order``): give files sorted by time (or by endpoint, then time). Long format: the
rows of one (endpoint, ts) must be contiguous; a group cut by a chunk boundary is carried to
the next chunk. A header with a duplicated column name, and a long row whose metric is a
reserved column (``endpoint_id``, ``ts``, ``metric``, ``value``), are refused
(:class:`~ocad.core.OcadValidationError`), as for a DataFrame.

Timestamps follow docs/timestamps.md: the chunk's ``ts`` is the raw column (numbers, Arrow
timestamps, strings) and the Monitor converts it with its ``tz``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import numpy as np

from .._errors import OcadValidationError, require
from ..pipeline._alerts import AlertEvent

__all__ = [
    "FAILURE_TS_COLUMN",
    "FAULT_TYPE_COLUMN",
    "LABEL_COLUMNS",
    "NORMAL_FAULT_TYPES",
    "ColumnChunk",
    "SampleReader",
    "fault_type_name",
    "iter_chunks",
    "read_records",
    "write_events",
]

# -- the labelled-file format (one definition for simulate, evaluate, tune-weights and train) --
#: The label column: the fault type of the sample, or one of NORMAL_FAULT_TYPES when normal.
FAULT_TYPE_COLUMN = "fault_type"
#: Optional: the hard-failure time (epoch s) of the gradual fault the sample belongs to.
FAILURE_TS_COLUMN = "failure_ts"
#: ``fault_type`` cells that mean "normal" (compared case-insensitively, stripped); missing too.
NORMAL_FAULT_TYPES = ("", "none", "normal")
#: Columns that carry labels, not measurements: read_records drops them (use them for evaluation).
LABEL_COLUMNS = frozenset({FAULT_TYPE_COLUMN, "label", FAILURE_TS_COLUMN})


def fault_type_name(v: Any) -> str:
    """The fault type of a ``fault_type`` cell: ``""`` for normal (empty, missing, "none", "normal").

    >>> [fault_type_name(v) for v in ("", None, float("nan"), " None ", "normal", "link_flap")]
    ['', '', '', '', '', 'link_flap']
    """
    if v is None or (isinstance(v, float) and v != v):
        return ""
    s = str(v).strip()
    return "" if s.lower() in NORMAL_FAULT_TYPES else s

#: Rows per chunk by default: ~100k rows x a dozen columns is tens of MB, whatever the file size.
DEFAULT_CHUNK_ROWS = 100_000
_NULLS = ["", "nan", "NaN", "NAN", "null", "NULL", "Null", "none", "None", "NONE"]
_TEXT_COLUMNS = ("endpoint_id", "metric") + tuple(sorted(LABEL_COLUMNS))
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_RESERVED_METRICS = frozenset({"endpoint_id", "ts", "metric", "value"})


@attrs.frozen(eq=False)
class ColumnChunk:
    """Rows of a file as columns: ``observe_columns(c.endpoint_id, c.ts, c.values)``."""

    endpoint_id: np.ndarray  # (R,) object
    ts: Any  # (R,) raw timestamps: numbers, datetime64, an Arrow array, strings
    values: dict[str, np.ndarray]
    #: Columns asked for with ``keep`` (e.g. endpoint labels), taken out of ``values``.
    extra: dict[str, np.ndarray] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return int(self.endpoint_id.shape[0])

    def __iter__(self) -> Iterator[Any]:  # (endpoint_id, ts, values): what Monitor.calibrate takes
        return iter((self.endpoint_id, self.ts, self.values))


def _is_stdin(path: Any) -> bool:
    return str(path) == "-"


def _is_parquet_name(name: str) -> bool:
    return name.lower().endswith((".parquet", ".pq", ".parq"))


class SampleReader:
    """A sample file opened for streaming; :meth:`chunks` yields :class:`ColumnChunk` s.

    Opening checks what can be checked before any work: the file exists, the format's extra is
    installed, the header has ``endpoint_id`` and ``ts``. ``columns`` is the header (for a long
    file: ``endpoint_id, ts, metric, value``), ``metrics`` the measurement columns of a wide file
    (``None`` for long files until read: :attr:`seen_metrics` grows as chunks are read).
    """

    def __init__(self, path: str | os.PathLike[str], *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 keep: Sequence[str] = (), tz: Any = None) -> None:
        from .._time import parse_tz

        self.path = path
        self.tz = parse_tz(tz)  # long files only: their rows are grouped by (endpoint, epoch seconds)
        self.name = "<stdin>" if _is_stdin(path) else str(path)
        self.chunk_rows = max(int(chunk_rows), 1)
        self.keep = tuple(keep)
        self.rows = 0
        self.rows_read = 0  # long files: rows read so far (an error's row index)
        self.seen_metrics: set[str] = set()
        self.total_rows: int | None = None
        self._stdin_head = b""
        if _is_stdin(path):
            buf = sys.stdin.buffer
            head = buf.peek(4)[:4] if hasattr(buf, "peek") else b""
            self.kind = "parquet" if head == _PARQUET_MAGIC else "csv"
        else:
            p = Path(path)
            if p.is_dir():
                self.kind = "parquet"
            elif not p.is_file():
                raise OcadValidationError("path", str(p), "file does not exist")
            elif _is_parquet_name(p.name) or _magic(p) == _PARQUET_MAGIC:
                self.kind = "parquet"
            else:
                self.kind = "csv"
        self._open()

    # -- opening -------------------------------------------------------------------------------
    def _open(self) -> None:
        if self.kind == "parquet":
            require("pyarrow", "io", f"reading Parquet ({self.name})")
            import pyarrow.dataset as ds

            if _is_stdin(self.path):
                import pyarrow as pa
                import pyarrow.parquet as pq

                try:
                    table = pq.read_table(pa.BufferReader(sys.stdin.buffer.read()))
                except Exception as exc:  # noqa: BLE001 - ArrowInvalid and friends: bad input
                    raise OcadValidationError("path", self.name, f"not readable Parquet: {_one_line(exc)}") from None
                self._dataset = ds.dataset(table)
            else:
                try:
                    self._dataset = ds.dataset(str(self.path), format="parquet", partitioning="hive")
                except Exception as exc:  # pyarrow raises ArrowInvalid / OSError with a useful text
                    raise OcadValidationError("path", self.name, f"not a readable Parquet file or dataset: "
                                                                 f"{_one_line(exc)}") from None
            self.columns = list(self._dataset.schema.names)
            try:
                self.total_rows = int(self._dataset.count_rows())
            except Exception:  # noqa: BLE001 - a count is only for the progress bar
                self.total_rows = None
        else:
            self.columns = self._csv_header()
        dup = sorted({str(c) for c in self.columns if self.columns.count(c) > 1})
        if dup:  # a reader would keep one of them silently: which one holds the data?
            raise OcadValidationError("columns", dup, f"{self.name} has duplicated column name(s) in its header")
        for req in ("endpoint_id", "ts"):
            if req not in self.columns:
                raise OcadValidationError(req, None, f"{self.name} has no {req!r} column (columns: {self.columns})")
        self.long = "metric" in self.columns and "value" in self.columns
        missing = [k for k in self.keep if k not in self.columns]
        if missing:
            raise OcadValidationError(missing[0], None, f"{self.name} has no {missing[0]!r} column "
                                                        f"(columns: {self.columns})")
        skip = {"endpoint_id", "ts", *LABEL_COLUMNS, *self.keep}
        self.metrics: list[str] | None = None if self.long else [c for c in self.columns if c not in skip]

    def _binary(self) -> IO[bytes]:
        """The CSV bytes, decompressed: a file, ``.gz`` (or gzip magic), or standard input."""
        if _is_stdin(self.path):
            raw: IO[bytes] = sys.stdin.buffer
            head = raw.peek(2)[:2] if hasattr(raw, "peek") else b""
        else:
            raw = open(self.path, "rb")
            head = raw.read(2)
            raw.seek(0)
        if head == _GZIP_MAGIC:
            return io.BufferedReader(gzip.GzipFile(fileobj=raw), buffer_size=1 << 20)  # type: ignore[arg-type]
        return raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]

    def _csv_header(self) -> list[str]:
        self._stream = self._binary()
        head = self._stream.peek(1 << 16)
        line = head.split(b"\n", 1)[0]
        if not line and not head:
            raise OcadValidationError("path", self.name, "is empty (expected a CSV header line)")
        try:
            text = line.decode("utf-8-sig").rstrip("\r")
        except UnicodeDecodeError:
            raise OcadValidationError("path", self.name, "is not UTF-8 text (CSV) nor Parquet") from None
        return next(csv.reader([text]), [])

    # -- reading ----------------------------------------------------------------------------------
    def chunks(self) -> Iterator[ColumnChunk]:
        if self.kind == "parquet":
            batches: Iterable[Any] = self._parquet_batches()
            convert: Callable[[Any], ColumnChunk] = self._from_arrow
        else:
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                yield from self._stdlib_csv()
                return
            batches, convert = self._arrow_csv_batches(), self._from_arrow
        carry: Any = None
        for batch in batches:
            chunk = convert(batch)
            if self.long:
                chunk, carry = self._pivot(chunk, carry, final=False)
            if len(chunk):
                self.rows += len(chunk)
                yield chunk
        if self.long and carry is not None:
            chunk, _ = self._pivot(None, carry, final=True)
            if len(chunk):
                self.rows += len(chunk)
                yield chunk

    def _parquet_batches(self) -> Iterator[Any]:
        # File by file, row group by row group, synchronously. Measured on a 10 M-row file
        # (docs/performance.md): the dataset scanner reads ahead as far as it can while the
        # consumer (the Monitor) is slower than the disk, and decoded the whole file (1.5 GB) before
        # the first chunk was scored; ParquetFile.iter_batches kept ~3 MB of Arrow memory per row
        # group read (pyarrow 26), growing with the file. read_row_group holds one row group.
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        for frag in self._dataset.get_fragments():
            if isinstance(frag, ds.ParquetFileFragment):
                keys = ds.get_partition_keys(frag.partition_expression) or {}
                pf = pq.ParquetFile(frag.path, filesystem=frag.filesystem)
                batches: Iterable[Any] = (
                    b for i in range(pf.num_row_groups)
                    for b in pf.read_row_group(i, use_threads=False).to_batches(max_chunksize=self.chunk_rows))
            else:  # an in-memory table (Parquet from standard input)
                keys, batches = {}, frag.to_batches(batch_size=self.chunk_rows)
            for b in batches:
                if not b.num_rows:
                    continue
                for k, v in keys.items():  # hive partition columns (site=paris/): constant per file
                    b = b.append_column(k, pa.array([v] * b.num_rows))
                yield b

    def _arrow_csv_batches(self) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        # Every column but ts as text: a number column with one stray word must not stop the stream
        # (each chunk converts its own text, see _numeric); ts is typed by pyarrow (timestamps or numbers).
        types = {c: pa.string() for c in self.columns if c != "ts"}
        convert = pcsv.ConvertOptions(column_types=types, null_values=_NULLS, strings_can_be_null=True)
        read = pcsv.ReadOptions(use_threads=False, block_size=1 << 30)
        # The text is cut into blocks of whole lines here and each block parsed on its own: Arrow's
        # streaming CSV reader reads ahead of a slower consumer (the Monitor) without a bound that
        # holds (measured: 230-300 MB of Arrow memory at 10 M rows, a peak RSS growing with the
        # file). One block of about chunk_rows lines is held at a time. Quoted fields must not
        # span lines (a metrics file has none).
        stream = self._stream
        header = stream.readline()
        if not header.endswith(b"\n"):
            header += b"\n"
        width = max(len(header), 16) * 2  # a generous guess of a row's length, from the header's
        block = int(min(max(self.chunk_rows * width, 1 << 16), 1 << 30))
        carry = b""
        while True:
            data = stream.read(block)
            buf = carry + data if carry else data
            if not data:
                body, carry = buf, b""
            else:
                cut = buf.rfind(b"\n")
                if cut < 0:
                    carry = buf
                    continue
                body, carry = buf[:cut + 1], buf[cut + 1:]
            if body.strip():
                try:
                    table = pcsv.read_csv(pa.py_buffer(header + body), read_options=read, convert_options=convert)
                except pa.ArrowInvalid as exc:
                    raise OcadValidationError("path", self.name, f"CSV cannot be parsed: {_one_line(exc)}") from None
                del body
                yield from (b for b in table.to_batches(max_chunksize=self.chunk_rows) if b.num_rows)
            if not data:
                return

    def _from_arrow(self, batch: Any) -> ColumnChunk:
        names = batch.schema.names
        col = {n: batch.column(i) for i, n in enumerate(names)}
        ep = _text(col["endpoint_id"])
        values: dict[str, np.ndarray] = {}
        extra: dict[str, np.ndarray] = {}
        for n in names:
            if n in ("endpoint_id", "ts") or n in LABEL_COLUMNS:
                continue
            if n in self.keep or n == "metric":
                extra[n] = _text(col[n])
            else:
                values[n] = _numeric(col[n])
        if not self.long:
            self.seen_metrics.update(values)
        return ColumnChunk(ep, col["ts"], values, extra)

    def _stdlib_csv(self) -> Iterator[ColumnChunk]:
        text = io.TextIOWrapper(self._stream, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        header = next(reader, [])
        idx = {n: i for i, n in enumerate(header)}
        carry: Any = None
        while True:
            rows = [r for _, r in zip(range(self.chunk_rows), reader)]
            if not rows:
                break
            width = len(header)
            cols = list(zip(*(r + [""] * (width - len(r)) if len(r) < width else r[:width] for r in rows)))
            ep = np.empty(len(rows), dtype=object)
            ep[:] = [v or None for v in cols[idx["endpoint_id"]]]
            ts = np.empty(len(rows), dtype=object)
            ts[:] = [_cell(v) for v in cols[idx["ts"]]]
            values, extra = {}, {}
            for n, i in idx.items():
                if n in ("endpoint_id", "ts") or n in LABEL_COLUMNS:
                    continue
                arr = np.empty(len(rows), dtype=object)
                if n in self.keep or n == "metric":
                    arr[:] = list(cols[i])
                    extra[n] = arr
                else:
                    arr[:] = [_cell(v) for v in cols[i]]
                    values[n] = _tighten(arr)
            if not self.long:
                self.seen_metrics.update(values)
            chunk = ColumnChunk(ep, ts, values, extra)
            if self.long:
                chunk, carry = self._pivot(chunk, carry, final=False)
            if len(chunk):
                self.rows += len(chunk)
                yield chunk
        if self.long and carry is not None:
            chunk, _ = self._pivot(None, carry, final=True)
            if len(chunk):
                self.rows += len(chunk)
                yield chunk

    # -- long format --------------------------------------------------------------------------------
    def _pivot(self, chunk: ColumnChunk | None, carry: tuple[Any, ...] | None, *,
               final: bool) -> tuple[ColumnChunk, tuple[Any, ...] | None]:
        """Long rows (+ the rows carried from the last chunk) → wide rows; carries the last group."""
        from .._time import ts_column

        parts = [] if carry is None else [carry]
        if chunk is not None:
            for i, m in enumerate(chunk.extra["metric"].tolist()):
                if m in _RESERVED_METRICS:
                    # It would rewrite the record's own endpoint or time: refused, as for a long DataFrame.
                    raise OcadValidationError("metric", m, "a long-format row may not name a reserved column "
                                              "(ts, endpoint_id, metric, value) as its metric",
                                              index=self.rows_read + i)
            self.rows_read += len(chunk)
            # ts as epoch seconds here: the group key (naive timestamps need the reader's tz).
            ts = ts_column(chunk.ts, len(chunk), self.tz)
            parts.append((chunk.endpoint_id, ts, chunk.extra["metric"], chunk.values["value"],
                          {k: v for k, v in chunk.extra.items() if k != "metric"}))
        if not parts:
            return _empty_chunk(), None
        ep = np.concatenate([p[0] for p in parts])
        ts = np.concatenate([p[1] for p in parts])
        metric = np.concatenate([p[2] for p in parts])
        value = np.concatenate([np.asarray(p[3], dtype=object) if np.asarray(p[3]).dtype.kind == "O" else
                                np.asarray(p[3]) for p in parts])
        extra = {k: np.concatenate([p[4][k] for p in parts]) for k in parts[-1][4]}
        n = ep.shape[0]
        new_carry = None
        if not final and n:
            # The last (endpoint, ts) group may continue in the next chunk: hold it back.
            tail = (ep == ep[-1]) & (ts == ts[-1])
            cut = n
            while cut > 0 and tail[cut - 1]:
                cut -= 1
            new_carry = (ep[cut:], ts[cut:], metric[cut:], value[cut:], {k: v[cut:] for k, v in extra.items()})
            ep, ts, metric, value = ep[:cut], ts[:cut], metric[:cut], value[:cut]
            extra = {k: v[:cut] for k, v in extra.items()}
            n = cut
        if n == 0:
            return _empty_chunk(), new_carry
        ep_key = np.array([e if isinstance(e, str) else "" for e in ep], dtype=object)
        order = np.lexsort((np.arange(n), ts, ep_key.astype(str)))
        e_s, t_s = ep_key[order], ts[order]
        start = np.ones(n, dtype=bool)
        start[1:] = (e_s[1:] != e_s[:-1]) | (t_s[1:] != t_s[:-1])
        gid_sorted = np.cumsum(start) - 1
        gid = np.empty(n, dtype=np.int64)
        gid[order] = gid_sorted
        firsts = order[start]
        g = firsts.shape[0]
        out: dict[str, np.ndarray] = {}
        for m in dict.fromkeys(x for x in metric.tolist() if isinstance(x, str) and x):
            rows = np.flatnonzero(metric == m)[::-1]  # reversed: the first row of a group wins
            col = np.full(g, np.nan) if value.dtype.kind in "iuf" else np.full(g, None, dtype=object)
            col[gid[rows]] = value[rows]
            out[m] = _tighten(col) if col.dtype.kind == "O" else col
        self.seen_metrics.update(out)
        return ColumnChunk(ep[firsts], ts[firsts], out, {k: v[firsts] for k, v in extra.items()}), new_carry


def iter_chunks(path: str | os.PathLike[str], *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                keep: Sequence[str] = (), tz: Any = None) -> Iterator[ColumnChunk]:
    """The samples of a CSV / Parquet file (``-``: stdin) as column chunks; see the module docstring."""
    return SampleReader(path, chunk_rows=chunk_rows, keep=keep, tz=tz).chunks()


def _empty_chunk() -> ColumnChunk:
    return ColumnChunk(np.empty(0, dtype=object), np.empty(0), {})


def _magic(p: Path) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(4)
    except OSError:
        return b""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _text(arr: Any) -> np.ndarray:
    out = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)
    return out


def _numeric(arr: Any) -> np.ndarray:
    """An Arrow column of measurements → numpy: numbers stay numbers, text is parsed cell by cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if hasattr(arr, "combine_chunks"):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            arr = pc.cast(arr, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            cells = np.empty(len(arr), dtype=object)
            cells[:] = [None if v is None else _cell(v) for v in arr.to_pylist()]
            return _tighten(cells)
        t = arr.type
    if pa.types.is_floating(t) or pa.types.is_integer(t):
        if arr.null_count:
            arr = pc.cast(arr, pa.float64())
            return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
        return np.asarray(arr.to_numpy(zero_copy_only=False))
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=object)


def _tighten(col: np.ndarray) -> np.ndarray:
    """An object column of floats / None → float64 (None = NaN); anything else stays as it is."""
    if all(v is None or type(v) is float for v in col.tolist()):
        return np.array([np.nan if v is None else v for v in col.tolist()], dtype=np.float64)
    return col


def _cell(v: str) -> Any:
    if v == "" or v.lower() in ("nan", "null", "none"):
        return None
    try:
        return float(v)
    except ValueError:
        return v


def read_records(path: str | os.PathLike[str], *, tz: Any = None) -> list[dict[str, Any]]:
    """All records of a CSV or Parquet file, in wide record form (small files; prefer :func:`iter_chunks`)."""
    out: list[dict[str, Any]] = []
    for c in iter_chunks(path, tz=tz):
        ts = c.ts.to_pylist() if hasattr(c.ts, "to_pylist") else list(c.ts)
        names = list(c.values)
        cols = [c.values[n].tolist() for n in names]
        for i, (e, t) in enumerate(zip(c.endpoint_id.tolist(), ts)):
            rec = {"endpoint_id": e, "ts": t}
            for n, col in zip(names, cols):
                v = col[i]
                rec[n] = None if isinstance(v, float) and v != v else v
            out.append(rec)
    return out


# -- events out --------------------------------------------------------------------------------------
EVENT_FORMATS = ("csv", "json", "jsonl", "parquet")
_CSV_COLUMNS = ["event", "ts", "alert_id", "endpoint_id", "severity", "score", "peak_score", "opened_ts",
                "resolved_ts", "kinds", "evidence", "labels"]


def event_format(path: str | os.PathLike[str], default: str = "csv") -> str:
    """The format a path's suffix names (``.csv``, ``.json``, ``.jsonl``, ``.parquet``/``.pq``), else ``default``."""
    s = str(path).lower()
    if s.endswith((".parquet", ".pq")):
        return "parquet"
    for f in ("jsonl", "json", "csv"):
        if s.endswith("." + f):
            return f
    return default


def write_events(events: list[AlertEvent], path: str | os.PathLike[str], fmt: str | None = None) -> Path | str:
    """Write alert events as CSV, JSON (a list), JSON lines or Parquet; ``-`` is standard output.

    ``fmt`` defaults to the path's suffix (``.json`` for an unknown one, as before); for ``-`` to CSV.
    Parquet (the ``io`` extra) has one row per event: the scalar fields as columns, ``kinds`` a list
    of strings, ``evidence`` and ``labels`` (and any other structured field) JSON strings.

    Every format carries the alert's endpoint labels: a ``labels`` object in JSON, and in
    CSV a ``labels`` cell ``name=value;name=value`` (``\\``, ``;`` and ``=`` in values escaped
    with a backslash).
    """
    to_stdout = str(path) == "-"
    fmt = fmt or (event_format(path, "csv") if to_stdout else event_format(path, "json"))
    if fmt == "parquet":
        require("pyarrow", "io", "writing alert events as Parquet")
    if to_stdout:
        if fmt == "parquet":
            sys.stdout.buffer.write(_parquet_bytes(events))
            sys.stdout.buffer.flush()
        else:
            _write_text(events, sys.stdout, fmt)
            sys.stdout.flush()
        return "-"
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        p.write_bytes(_parquet_bytes(events))
    else:
        with open(p, "w", newline="", encoding="utf-8") as f:
            _write_text(events, f, fmt)
    return p


def _labels_cell(labels: Any) -> str:
    # Label names are [a-zA-Z0-9_]; values may hold anything, so ';' '=' and '\\' in them are escaped.
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace(";", "\\;").replace("=", "\\=")
    return ";".join(f"{k}={esc(v)}" for k, v in sorted(labels.items()))


def _write_text(events: list[AlertEvent], f: IO[str], fmt: str) -> None:
    if fmt == "csv":
        w = csv.writer(f)
        w.writerow(_CSV_COLUMNS)
        for ev in events:
            a = ev.alert
            evid = "; ".join(f"{e.detector}:{e.metric} obs={_fmt(e.observed)} exp={_fmt(e.expected)} "
                             f"c={e.contribution:.3f}" for e in a.evidence)
            w.writerow([ev.event, ev.ts, a.alert_id, a.endpoint_id, a.severity, f"{a.score:.4f}",
                        f"{a.peak_score:.4f}", a.opened_ts, a.resolved_ts if a.resolved_ts is not None else "",
                        "+".join(a.kinds), evid, _labels_cell(a.labels)])
    elif fmt == "jsonl":
        for ev in events:
            f.write(json.dumps(ev.to_dict()) + "\n")
    else:
        f.write(json.dumps([ev.to_dict() for ev in events], indent=1))


def _parquet_bytes(events: list[AlertEvent]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    dicts = [ev.to_dict() for ev in events]
    keys = list(dicts[0]) if dicts else ["event", "ts", "alert_id", "endpoint_id", "severity", "score",
                                         "peak_score", "opened_ts", "updated_ts", "resolved_ts", "kinds",
                                         "evidence"]
    cols: dict[str, Any] = {}
    for k in keys:
        vals = [d.get(k) for d in dicts]
        if k == "kinds":
            cols[k] = pa.array(vals, pa.list_(pa.string()))
        elif k.endswith("_ts") or k in ("ts", "score", "peak_score"):
            cols[k] = pa.array(vals, pa.float64())
        elif any(isinstance(v, (dict, list, tuple)) for v in vals) or k == "evidence":
            cols[k] = pa.array([json.dumps(v) for v in vals], pa.string())
        else:
            cols[k] = pa.array(vals)
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue()


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4g}"
