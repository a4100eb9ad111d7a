"""Scale-out on Apache Spark: batch and stateful streaming scoring of a fleet (extra ``spark``).

Every group of endpoints runs the same :class:`~ocad.core.Monitor` code, with the
same configuration and artifacts, as a single process would::

    from ocad.core import spark as ocad_spark

    res = ocad_spark.score(df)                     # df: endpoint_id, ts, <metric columns> (or long)
    res.events.write.parquet("alerts/")            # open / update / resolve, with evidence
    res.scores.write.parquet("scores/")            # composite + per-detector score per sample

    events = ocad_spark.stream(spark.readStream...)  # Structured Streaming, state kept per group
    events.writeStream.format("delta")...

How the work is split
---------------------
Rows are grouped by endpoint, so every endpoint's samples meet in one group:
``buckets=n`` hashes endpoints into ``n`` groups (``pmod(xxhash64(endpoint_id), n)``),
``buckets="endpoint"`` makes one group per endpoint, ``buckets=None`` picks ``n``
(batch: one group per executor core, more for large inputs; streaming:
:data:`STREAM_BUCKETS`). A group runs ``applyInPandas`` (batch) or
``applyInPandasWithState`` (streaming): its samples are sorted by time and fed to
a Monitor that holds only that group's endpoints. The Monitor works tick by tick
across the endpoints it holds, and a tick costs nearly as much for one endpoint
as for dozens, so a few large groups are much faster than many small ones (see
``docs/performance.md``); a group must fit in an executor's memory (batch: all
of its samples, one pandas frame; streaming: one micro-batch of them plus its
state). Bucket ``b`` is keyed so that it gets partition ``b`` of its own (plain bucket
numbers would share partitions under Spark's hash partitioning: see ``_partition_keys``);
in streaming that holds when ``spark.sql.shuffle.partitions`` equals ``buckets``.

Why the results equal a single-process Monitor's
------------------------------------------------
Detectors are pure functions of an endpoint's window and all other state (window,
alert policy) is per endpoint, so an endpoint's scores and events do not depend
on which other endpoints share its ticks (``tests/test_spark.py`` checks that the
events are identical). The exceptions are the two *cross-endpoint* effects of one
WindowStore: idle eviction (an endpoint silent for ``idle_timeout_s`` of *sample
time*, measured against the newest sample the store has seen) uses the newest
sample of the group, not of the fleet, and LRU eviction beyond ``capacity`` counts
the group's endpoints. Neither happens while every endpoint keeps reporting and a
group holds fewer than ``capacity`` endpoints. With ``buckets="endpoint"`` an
endpoint's group is itself, so it is never evicted as idle: its state stays in the state store
until it reports again. Duplicate ``(endpoint, ts)`` rows keep an arbitrary one (Spark
gives no row order inside a group). Shadow runners are not run on Spark.

Executors, artifacts, sessions
------------------------------
The functions shipped to executors carry a :class:`MonitorSpec` (the configuration
as data, the name and digest of the model directory, no live objects). Each
executor's Python worker builds the Monitor once per spec and keeps it in a
module-level cache (:func:`cache_info`); every group resets its state
(:func:`ocad.core.reset_state`) and reuses the detectors, so onnxruntime sessions
are created once per process, not per group or micro-batch. Shipped default models
are package data and need no shipping; a trained model directory
(``model_dir=``) is sent once with ``SparkContext.addFile(dir, recursive=True)``
and found on executors with ``SparkFiles.get``. Executors need ``ocad-core`` (and
``ocad-detectors-ml`` for the ML detectors) installed in the Python that Spark
runs (``spark.pyspark.python``).

Streaming state
---------------
One state row per group: ``state`` (a string: the JSON document of
:func:`ocad.core.export_state` for the group's endpoints, plus the grouping) and
``endpoints`` (long). JSON rather than array columns because PySpark 4.2 and 4.3
lower-case the state schema they hand to the Python worker (``EvalConf`` /
``Conf.get(lower_str=True)``), so ``elementType`` becomes ``elementtype`` and any
``ArrayType`` in an ``applyInPandasWithState`` state fails with ``KeyError:
'elementType'``; strings work on every version. Keep ``buckets`` unchanged across
restarts of one checkpoint: the state says which grouping wrote it and a different
one is refused.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ._errors import OcadConfigError, require

__all__ = ["MAX_ROWS_PER_BUCKET", "STREAM_BUCKETS", "MonitorSpec", "SparkScores", "cache_info", "score", "split",
           "stream"]

MAX_ROWS_PER_BUCKET = 2_000_000
"""Batch, ``buckets=None``: at least one bucket per this many input rows (a group is one pandas frame)."""

STREAM_BUCKETS = 32
"""Streaming, ``buckets=None``: a constant, not derived from the cluster, because the state is
keyed by bucket and the number must not change between restarts of one checkpoint. Start a
new checkpoint with ``spark.sql.shuffle.partitions`` equal to the number of buckets: each
bucket is then one task per micro-batch."""

BUCKET_COLUMN = "ocad_bucket"
# Field names stay lower-case: PySpark 4.2/4.3 lower-case the state schema (see module docstring).
STATE_SCHEMA = "state string, endpoints long"
_SCORE_PREFIX = "score_"
_EVENT_FIELDS = ("event", "alert_id", "severity", "score", "peak_score", "opened_ts", "updated_ts",
                 "resolved_ts", "kinds", "evidence", "labels")
_CACHE_LIMIT = 4

# Executor-side cache: one Monitor per spec key per Python worker process.
_MONITORS: dict[str, Any] = {}
_COUNTERS = {"builds": 0, "groups": 0}
_BUILDS_BY_SPEC: dict[str, int] = {}
_GROUPS_BY_SPEC: dict[str, int] = {}
_SHIPPED: dict[tuple[int, str], tuple[str, str | None]] = {}


def _pyspark(purpose: str) -> Any:
    return require("pyspark", "spark", purpose)


# -- what executors build -------------------------------------------------------
@attrs.frozen
class MonitorSpec:
    """How an executor builds its Monitor: plain, picklable data and a key for its cache.

    Make one with :meth:`create`; ``score`` and ``stream`` do it for you from their
    ``config`` / ``model_dir`` arguments.
    """

    config: Any
    model_dir: str | None
    model_digest: str | None
    autoload_plugins: bool
    strict: bool
    key: str
    #: Endpoint labels as sorted JSON (hashable, picklable); "{}" for none.
    labels_json: str = "{}"

    @classmethod
    def create(cls, config: Any = None, *, model_dir: str | os.PathLike[str] | None = None,
               autoload_plugins: bool = True, strict: bool = False, labels: Any = None) -> MonitorSpec:
        """``config``: anything :class:`~ocad.core.Monitor` takes; a TOML path is read here, on the driver.

        ``labels``: endpoint labels as for ``Monitor(labels=...)``; an inventory file is read here too.
        """
        from ._config import MonitorConfig
        from ._labels import EndpointLabels

        cfg = MonitorConfig.coerce(config)  # validates now; a TOML file need not exist on executors
        labels_json = json.dumps(EndpointLabels.coerce(labels).to_dict(), sort_keys=True)
        mdir = digest = None
        if model_dir is not None:
            p = Path(model_dir).resolve()
            if not p.is_dir():
                raise OcadConfigError(f"model_dir = {str(model_dir)!r}: not a directory")
            mdir, digest = str(p), _dir_digest(p)
        key = hashlib.sha256(repr((cfg, digest, bool(autoload_plugins), bool(strict), labels_json))
                             .encode()).hexdigest()
        return cls(config=cfg, model_dir=mdir, model_digest=digest, autoload_plugins=bool(autoload_plugins),
                   strict=bool(strict), key=key, labels_json=labels_json)

    def build(self, model_path: str | None = None) -> Any:
        """A new Monitor; ``model_path``: where the model directory is on this machine."""
        from ._monitor import Monitor
        from .plugins._registry import PluginRegistry, default_registry

        registry = default_registry() if self.autoload_plugins else PluginRegistry(autoload=False)
        labels = json.loads(self.labels_json)
        if self.model_dir is None:
            return Monitor(self.config, registry=registry, strict=self.strict, labels=labels)
        return Monitor.from_model_dir(model_path or self.model_dir, self.config, registry=registry,
                                      strict=self.strict, labels=labels)


def _dir_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _model_path(spec: MonitorSpec) -> str | None:
    if spec.model_dir is None:
        return None
    from pyspark import SparkFiles

    try:
        p = SparkFiles.get(os.path.basename(spec.model_dir))
    except Exception:  # noqa: BLE001 - no SparkContext/worker here (a driver-side call): use the path
        return spec.model_dir
    return p if os.path.isdir(p) else spec.model_dir


def _executor_monitor(spec: MonitorSpec) -> Any:
    """This process's Monitor for ``spec``, with empty state: built once, reset per group."""
    from .pipeline._state import reset_state

    mon = _MONITORS.get(spec.key)
    if mon is None:
        if len(_MONITORS) >= _CACHE_LIMIT:
            _MONITORS.pop(next(iter(_MONITORS)))
        mon = _MONITORS[spec.key] = spec.build(_model_path(spec))
        _COUNTERS["builds"] += 1
        _BUILDS_BY_SPEC[spec.key] = _BUILDS_BY_SPEC.get(spec.key, 0) + 1
    _COUNTERS["groups"] += 1
    _GROUPS_BY_SPEC[spec.key] = _GROUPS_BY_SPEC.get(spec.key, 0) + 1
    return reset_state(mon)


def cache_info() -> dict[str, Any]:
    """This process's Monitor cache: ``pid``, ``monitors`` held, ``builds`` and ``groups`` so far,
    and both per :attr:`MonitorSpec.key` (``builds_by_spec``, ``groups_by_spec``).

    Run it on executors (e.g. inside ``applyInPandas``) to check that each Python
    worker built its Monitor (and onnxruntime sessions) once per spec.
    """
    return {"pid": os.getpid(), "monitors": len(_MONITORS), **_COUNTERS,
            "builds_by_spec": dict(_BUILDS_BY_SPEC), "groups_by_spec": dict(_GROUPS_BY_SPEC)}


def _ship_models(spark: Any, spec: MonitorSpec) -> None:
    if spec.model_dir is None:
        return
    sc = spark.sparkContext
    name = os.path.basename(spec.model_dir)
    shipped = _SHIPPED.get((id(sc), name))
    if shipped == (spec.model_dir, spec.model_digest):
        return
    if shipped is not None:
        # Executors find the directory by name and Spark cannot replace a file it has shipped.
        raise OcadConfigError(
            f"model_dir {spec.model_dir!r}: a directory named {name!r} was already shipped to this SparkContext "
            f"({'another path' if shipped[0] != spec.model_dir else 'its content has changed since'}); "
            "give each model version a directory name of its own, or start a new SparkSession")
    sc.addFile(spec.model_dir, recursive=True)
    _SHIPPED[(id(sc), name)] = (spec.model_dir, spec.model_digest)


# -- input and output frames ------------------------------------------------------
def _prepare(df: Any, monitor: Any) -> Any:
    """Select and type the columns the Monitor reads (wide or long), ``ts`` as epoch seconds."""
    _pyspark("ocad.core.spark")
    from pyspark.sql import functions as F
    from pyspark.sql.types import NumericType, TimestampNTZType, TimestampType

    cols = df.columns
    for req in ("endpoint_id", "ts"):
        if req not in cols:
            raise OcadConfigError(f"the DataFrame has no {req!r} column (columns: {cols})")
    if isinstance(df.schema["ts"].dataType, TimestampNTZType):
        raise OcadConfigError("column 'ts' is a timestamp without time zone (timestamp_ntz): make it a timestamp "
                              "(e.g. to_utc_timestamp) or epoch seconds, so that the instant is unambiguous")
    typ = df.schema["ts"].dataType
    if isinstance(typ, TimestampType):
        ts = (F.unix_micros(F.col("ts")) / F.lit(1e6)).alias("ts")
    elif isinstance(typ, NumericType):
        ts = F.col("ts").cast("double").alias("ts")
    else:
        raise OcadConfigError(f"column 'ts' is {typ.simpleString()}: give epoch seconds (a number) or a timestamp "
                              "(e.g. to_timestamp of ISO-8601 strings with an offset), see docs/timestamps.md")
    sel = [F.col("endpoint_id").cast("string").alias("endpoint_id"), ts]
    if "metric" in cols and "value" in cols:
        sel += [F.col("metric").cast("string").alias("metric"), F.col("value").cast("double").alias("value")]
    else:
        metrics = [m for m in monitor.metrics.names() if m in cols]
        if not metrics:
            raise OcadConfigError(f"the DataFrame has none of the Monitor's metrics {list(monitor.metrics.names())} "
                                  f"as columns, and no 'metric'/'value' columns for long format (columns: {cols})")
        sel += [F.col(m).cast("double").alias(m) for m in metrics]
    return df.select(*sel)


def _restore_ts(df: Any, out: Any) -> Any:
    """``ts`` of the output in the input's type: a timestamp column comes back a timestamp."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    if isinstance(df.schema["ts"].dataType, TimestampType):
        return out.withColumn("ts", F.timestamp_micros(F.round(F.col("ts") * F.lit(1e6)).cast("long")))
    return out


def _check_buckets(buckets: Any) -> None:
    if buckets == "endpoint" or buckets is None:
        return
    if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
        raise OcadConfigError(f"buckets = {buckets!r}: must be an integer >= 1, \"endpoint\" (one group per "
                              "endpoint) or None (automatic)")


def _bucket(n: int) -> Any:
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64("endpoint_id"), F.lit(n))


def _group_batch(data: Any, buckets: int | str | None) -> tuple[Any, str]:
    """Add the group column and place each group in its own partition; returns (data, column)."""
    from pyspark.sql import functions as F

    _check_buckets(buckets)
    spark = data.sparkSession
    if buckets == "endpoint":
        # An explicit partition count: adaptive execution must not coalesce the (small) input into one task.
        return data.repartition(int(spark.conf.get("spark.sql.shuffle.partitions")), "endpoint_id"), "endpoint_id"
    if buckets is None:
        buckets = max(int(spark.sparkContext.defaultParallelism), -(-data.count() // MAX_ROWS_PER_BUCKET))
    keys = _partition_keys(int(buckets))
    # bigint: the keys were chosen for the hash of a long (a small literal would be an int, hashed otherwise).
    key = F.element_at(F.array(*[F.lit(k) for k in keys]), (_bucket(buckets) + 1).cast("int")).cast("long")
    # repartition(n, key) puts bucket b alone in partition b (see _partition_keys); groupBy reuses it.
    return data.withColumn(BUCKET_COLUMN, key).repartition(int(buckets), BUCKET_COLUMN), BUCKET_COLUMN


def _group_stream(data: Any, buckets: int | str | None) -> tuple[Any, str, str]:
    """Group column for streaming; returns (data, column, grouping written into the state).

    The key of bucket b depends on the number of buckets only, so it is the same on every
    restart of a checkpoint. A stateful operator hash-partitions its keys over the
    checkpoint's ``spark.sql.shuffle.partitions``: when that equals ``buckets`` every bucket
    has a state partition (a task) of its own.
    """
    from pyspark.sql import functions as F

    _check_buckets(buckets)
    if buckets == "endpoint":
        return data, "endpoint_id", "endpoint"
    n = STREAM_BUCKETS if buckets is None else int(buckets)
    keys = _partition_keys(n)
    key = F.element_at(F.array(*[F.lit(k) for k in keys]), (_bucket(n) + 1).cast("int")).cast("long")
    return data.withColumn(BUCKET_COLUMN, key), BUCKET_COLUMN, f"xxhash64 % {n}"


def _murmur3_long(v: int, seed: int = 42) -> int:
    """Spark's ``hash()`` of a bigint (Murmur3_x86_32.hashLong, seed 42): what HashPartitioning uses."""
    def mix_k1(k: int) -> int:
        k = (k * 0xCC9E2D51) & 0xFFFFFFFF
        k = ((k << 15) | (k >> 17)) & 0xFFFFFFFF
        return (k * 0x1B873593) & 0xFFFFFFFF

    def mix_h1(h: int, k: int) -> int:
        h ^= k
        h = ((h << 13) | (h >> 19)) & 0xFFFFFFFF
        return (h * 5 + 0xE6546B64) & 0xFFFFFFFF

    v &= 0xFFFFFFFFFFFFFFFF
    h = mix_h1(mix_h1(seed, mix_k1(v & 0xFFFFFFFF)), mix_k1(v >> 32))
    h ^= 8
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h - (1 << 32) if h >= 1 << 31 else h


@functools.lru_cache(maxsize=64)
def _partition_keys(n: int) -> tuple[int, ...]:
    """Group keys k_0..k_{n-1} with ``pmod(hash(k_b), n) == b``.

    Grouping by the bucket numbers 0..n-1 themselves lets Spark's hash partitioning put
    several buckets in one partition and leave others empty (for n = 2 both land in
    partition 1: one core does all the work). Keyed by k_b, ``repartition(n, key)``
    gives every bucket a partition of its own, so n buckets are n equal tasks.
    """
    keys: list[int | None] = [None] * n
    left, k = n, 0
    while left:
        b = _murmur3_long(k) % n
        if keys[b] is None:
            keys[b] = k
            left -= 1
        k += 1
    return tuple(int(x) for x in keys if x is not None)


def _output_schema(names: tuple[str, ...]) -> Any:
    _pyspark("ocad.core.spark")
    from pyspark.sql import types as T
    d, s = T.DoubleType(), T.StringType()
    fields = [T.StructField("record", s), T.StructField("endpoint_id", s), T.StructField("ts", d),
              T.StructField("composite", d)]
    fields += [T.StructField(_SCORE_PREFIX + n, d) for n in names]
    fields += [T.StructField("event", s), T.StructField("alert_id", s), T.StructField("severity", s),
               T.StructField("score", d), T.StructField("peak_score", d), T.StructField("opened_ts", d),
               T.StructField("updated_ts", d), T.StructField("resolved_ts", d),
               T.StructField("kinds", T.ArrayType(s)), T.StructField("evidence", s),
               T.StructField("labels", s)]
    return T.StructType(fields)


def _output_frame(names: tuple[str, ...], scores: Mapping[str, np.ndarray] | None, events: list[Any]) -> Any:
    import pandas as pd

    n_s = 0 if scores is None else len(scores["ts"])
    n_e = len(events)
    n = n_s + n_e
    nan = np.full(n_e, np.nan)
    none = np.full(n_e, None, dtype=object)
    out: dict[str, Any] = {"record": np.array(["score"] * n_s + ["event"] * n_e, dtype=object)}
    dicts = [ev.to_dict() for ev in events]
    ev_ep = np.array([d["endpoint_id"] for d in dicts], dtype=object)
    ev_ts = np.array([d["ts"] for d in dicts], dtype=np.float64)
    if scores is None:
        out["endpoint_id"], out["ts"] = ev_ep, ev_ts
        out["composite"] = nan
        for nm in names:
            out[_SCORE_PREFIX + nm] = nan
    else:
        out["endpoint_id"] = np.concatenate([np.asarray(scores["endpoint_id"], dtype=object), ev_ep])
        out["ts"] = np.concatenate([np.asarray(scores["ts"], dtype=np.float64), ev_ts])
        out["composite"] = np.concatenate([scores["composite"], nan])
        for nm in names:
            out[_SCORE_PREFIX + nm] = np.concatenate([scores[nm], nan])
    pad = np.full(n_s, None, dtype=object)
    padf = np.full(n_s, np.nan)
    for f in _EVENT_FIELDS:
        if f in ("score", "peak_score", "opened_ts", "updated_ts", "resolved_ts"):
            vals = np.array([np.nan if d[f] is None else d[f] for d in dicts], dtype=np.float64)
            out[f] = np.concatenate([padf, vals]) if n_s else vals
            continue
        if f == "kinds":
            vals = np.empty(n_e, dtype=object)
            for i, d in enumerate(dicts):  # element-wise: a list of lists would broadcast to 2-D
                vals[i] = list(d["kinds"])
        elif f in ("evidence", "labels"):  # JSON text, like the event files
            vals = np.empty(n_e, dtype=object)
            for i, d in enumerate(dicts):
                vals[i] = json.dumps(d[f], sort_keys=f == "labels")
        else:
            vals = np.array([d[f] for d in dicts], dtype=object) if n_e else none
        out[f] = np.concatenate([pad, vals]) if n_s else vals
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def _run(monitor: Any, pdf: Any, want_scores: bool) -> tuple[dict[str, np.ndarray] | None, list[Any]]:
    pdf = pdf.drop(columns=[BUCKET_COLUMN], errors="ignore").sort_values("ts", kind="stable")
    if want_scores:
        sc = monitor.score_frame(pdf, as_frame=False)
        return sc, monitor.last_events
    return None, monitor.observe(pdf)


def _batch_group(spec: MonitorSpec, names: tuple[str, ...], want_scores: bool, want_events: bool,
                 pdf: Any) -> Any:
    mon = _executor_monitor(spec)
    sc, events = _run(mon, pdf, want_scores)
    return _output_frame(names, sc, events if want_events else [])


def _stream_group(spec: MonitorSpec, names: tuple[str, ...], want_scores: bool, grouping: str,
                  key: tuple[Any, ...], pdfs: Iterator[Any], state: Any) -> Iterator[Any]:
    import pandas as pd

    from .pipeline._state import export_state, import_state

    mon = _executor_monitor(spec)
    if state.exists:
        doc = json.loads(state.get[0])
        if doc.get("grouping") != grouping:
            raise OcadConfigError(
                f"streaming state for group {key!r} was written with grouping {doc.get('grouping')!r}, this query "
                f"uses {grouping!r}: keep `buckets` unchanged for one checkpoint (or start a new checkpoint)")
        import_state(mon, doc)
    frames = [p for p in pdfs if len(p)]
    sc, events = (None, [])
    if frames:
        sc, events = _run(mon, frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True),
                          want_scores)
    doc = export_state(mon)
    if doc["endpoint_id"]:
        doc["grouping"] = grouping
        state.update((json.dumps(doc, separators=(",", ":")), len(doc["endpoint_id"])))
    elif state.exists:
        state.remove()
    yield _output_frame(names, sc, events)


# -- public API --------------------------------------------------------------------
@attrs.frozen
class SparkScores:
    """Result of :func:`score`: lazy Spark DataFrames.

    ``frame`` is the one computed DataFrame (a ``record`` column says ``"score"`` or
    ``"event"``); ``scores`` and ``events`` select from it. When both were asked for,
    ``frame`` is persisted so that using both does not score the data twice: call
    :meth:`unpersist` when done.
    """

    frame: Any
    scores: Any
    events: Any

    def unpersist(self) -> None:
        self.frame.unpersist()


def split(frame: Any) -> tuple[Any, Any]:
    """``(scores, events)`` of a combined frame (``score`` / ``stream(scores=True)`` output).

    Use it inside ``foreachBatch`` for a stream that outputs both.
    """
    _pyspark("ocad.core.spark.split")
    from pyspark.sql import functions as F

    dets = [c for c in frame.columns if c.startswith(_SCORE_PREFIX)]
    scores = frame.filter(F.col("record") == "score").select(
        "endpoint_id", "ts", "composite", *[F.col(c).alias(c[len(_SCORE_PREFIX):]) for c in dets])
    events = frame.filter(F.col("record") == "event").select("endpoint_id", "ts", *_EVENT_FIELDS)
    return scores, events


def _driver_monitor(spec: MonitorSpec) -> Any:
    # Built once on the driver for the output schema (detector names) and to fail early on bad config.
    return spec.build()


def score(df: Any, config: Any = None, *, model_dir: str | os.PathLike[str] | None = None,
          buckets: int | str | None = None, scores: bool = True, events: bool = True,
          autoload_plugins: bool = True, strict: bool = False, persist: bool = True,
          labels: Any = None) -> SparkScores:
    """Score a Spark DataFrame of samples; returns scores and alert events as DataFrames.

    Parameters
    ----------
    df:
        Wide (``endpoint_id``, ``ts``, one column per metric) or long (``endpoint_id``, ``ts``,
        ``metric``, ``value``). ``ts``: epoch seconds (numeric) or a Spark timestamp. Columns that
        are not metrics of the Monitor (labels, ...) are ignored.
    config, model_dir, autoload_plugins, strict:
        The Monitor, as ``Monitor(config)`` or ``Monitor.from_model_dir(model_dir, config)``;
        ``autoload_plugins=False`` uses built-in detectors only.
    labels:
        Endpoint labels, as for ``Monitor(labels=...)`` (a mapping, or an inventory file read on
        the driver); every event's ``labels`` column holds its alert's labels as JSON.
    buckets:
        Number of endpoint groups (``pmod(xxhash64(endpoint_id), n)``), each one task; ``"endpoint"``:
        one group per endpoint; ``None``: the executor cores (``defaultParallelism``), or more so that
        no group exceeds :data:`MAX_ROWS_PER_BUCKET` input rows (counts the input once).
    scores, events:
        Which outputs to produce (scoring every sample is needed for events either way).
    persist:
        Persist the computed frame when both outputs are asked for.

    Example
    -------
    >>> df = spark.createDataFrame(fleet.to_frame())  # doctest: +SKIP
    >>> res = score(df, {"monitor": {"use_shipped_models": False}})  # doctest: +SKIP
    >>> res.events.orderBy("ts").show()  # doctest: +SKIP
    """
    _pyspark("ocad.core.spark.score")
    spark = df.sparkSession
    spec = MonitorSpec.create(config, model_dir=model_dir, autoload_plugins=autoload_plugins, strict=strict,
                              labels=labels)
    mon = _driver_monitor(spec)
    names = tuple(mon.composite.names)
    _ship_models(spark, spec)
    data, group = _group_batch(_prepare(df, mon), buckets)
    want_scores, want_events = bool(scores), bool(events)

    # A plain closure, not functools.partial: PySpark inspects the function's type hints.
    def fn(pdf):  # type: ignore[no-untyped-def]
        return _batch_group(spec, names, want_scores, want_events, pdf)

    frame = _restore_ts(df, data.groupBy(group).applyInPandas(fn, schema=_output_schema(names)))
    if scores and events and persist:
        frame = frame.persist()
    sc, ev = split(frame)
    return SparkScores(frame=frame, scores=sc, events=ev)


def stream(df: Any, config: Any = None, *, model_dir: str | os.PathLike[str] | None = None,
           buckets: int | str | None = None, scores: bool = False, autoload_plugins: bool = True,
           strict: bool = False, labels: Any = None) -> Any:
    """Stateful streaming scoring of a streaming DataFrame; returns a streaming DataFrame.

    ``df`` is a streaming DataFrame of samples shaped as for :func:`score`; ``buckets``: as for
    :func:`score`, ``None`` meaning :data:`STREAM_BUCKETS`; keep it for the life of a checkpoint.
    ``labels``: endpoint labels, as for :func:`score`.
    Each group's window
    and alert state is kept across micro-batches with ``applyInPandasWithState`` (one JSON state
    row per group, no timeout). Returns the alert events (the columns of ``score(...).events``),
    or with ``scores=True`` the combined frame: split it with :func:`split` in
    ``foreachBatch``. Write it with output mode ``append``. Samples older than an endpoint's last
    one are dropped (counted as ``out_of_order``), so feed each endpoint in time order.

    Example
    -------
    >>> src = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet("in/")  # doctest: +SKIP
    >>> q = stream(src).writeStream.format("parquet").option("path", "alerts/") \\
    ...     .option("checkpointLocation", "ckpt/").outputMode("append").start()  # doctest: +SKIP
    """
    _pyspark("ocad.core.spark.stream")
    from pyspark.sql.streaming.state import GroupStateTimeout

    spark = df.sparkSession
    spec = MonitorSpec.create(config, model_dir=model_dir, autoload_plugins=autoload_plugins, strict=strict,
                              labels=labels)
    mon = _driver_monitor(spec)
    names = tuple(mon.composite.names)
    _ship_models(spark, spec)
    data, group, grouping = _group_stream(_prepare(df, mon), buckets)
    want_scores = bool(scores)

    def fn(key, pdfs, state):  # type: ignore[no-untyped-def]
        return _stream_group(spec, names, want_scores, grouping, key, pdfs, state)

    out = data.groupBy(group).applyInPandasWithState(
        fn, outputStructType=_output_schema(names), stateStructType=STATE_SCHEMA, outputMode="append",
        timeoutConf=GroupStateTimeout.NoTimeout)
    out = _restore_ts(df, out)
    if scores:
        return out
    _, ev = split(out)
    return ev
