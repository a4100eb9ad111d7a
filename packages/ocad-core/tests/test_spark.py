"""ocad.core.spark on a local[2] SparkSession: batch and streaming equal a single-process Monitor.

Skipped (with the reason) when pyspark is not installed: ``pip install "ocad-core[spark]"``,
Java 17+ on the PATH or in JAVA_HOME.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ocad.core import Monitor, OcadConfigError, OcadDependencyError
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet

pytestmark = pytest.mark.filterwarnings(
    "ignore:PySpark does not yet fully support pandas:FutureWarning",
    "ignore:The copy keyword is deprecated",
)

CFG = {"monitor": {"use_shipped_models": False}}
FULL_CFG = {"monitor": {"use_shipped_models": True}}
N_CHUNKS = 5


def _key(d):
    return (d["event"], d["endpoint_id"], float(d["ts"]), d["alert_id"], d["severity"], round(float(d["score"]), 9))


# -- no Spark needed -------------------------------------------------------------
def test_importing_the_module_does_not_import_pyspark():
    code = "import sys, ocad.core, ocad.core.spark; sys.exit(1 if 'pyspark' in sys.modules else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_missing_pyspark_names_the_extra(monkeypatch):
    from ocad.core import spark as ocad_spark

    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(OcadDependencyError, match=r'pip install "ocad-core\[spark\]"'):
        ocad_spark.score(object())


def test_monitor_spec_key_and_model_digest(tmp_path):
    from ocad.core.spark import MonitorSpec

    a, b = MonitorSpec.create(CFG), MonitorSpec.create(dict(CFG))
    assert a.key == b.key
    assert MonitorSpec.create({"monitor": {"use_shipped_models": False, "window": 64}}).key != a.key
    assert MonitorSpec.create(CFG, autoload_plugins=False).key != a.key
    lab = MonitorSpec.create(CFG, labels={"oru-1": {"site": "p"}})
    assert lab.key != a.key and lab.build().labels.get("oru-1") == {"site": "p"}
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_text("{}")
    s1 = MonitorSpec.create(CFG, model_dir=tmp_path / "m")
    (tmp_path / "m" / "manifest.json").write_text('{"v": 2}')
    s2 = MonitorSpec.create(CFG, model_dir=tmp_path / "m")
    assert s1.model_digest != s2.model_digest and s1.key != s2.key
    with pytest.raises(OcadConfigError, match="not a directory"):
        MonitorSpec.create(CFG, model_dir=tmp_path / "nope")


@pytest.mark.parametrize("n", [1, 2, 3, 16, 200])
def test_partition_keys_give_each_bucket_its_own_partition(n):
    from ocad.core.spark import _murmur3_long, _partition_keys

    keys = _partition_keys(n)
    assert len(set(keys)) == n
    assert [_murmur3_long(k) % n for k in keys] == list(range(n))


def test_executor_cache_builds_once_per_process():
    from ocad.core import spark as ocad_spark

    spec = ocad_spark.MonitorSpec.create(CFG, autoload_plugins=False)
    before = ocad_spark.cache_info()["builds"]
    m1 = ocad_spark._executor_monitor(spec)
    m1.observe([{"endpoint_id": "a", "ts": 0.0, "udp_echo_rtt_ms": 4.0}])
    m2 = ocad_spark._executor_monitor(spec)
    assert m2 is m1 and len(m2.store) == 0  # same detectors, state reset for the next group
    assert ocad_spark.cache_info()["builds"] == before + 1


# -- Spark ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def spark():
    pytest.importorskip("pyspark", reason="needs the spark extra: pip install \"ocad-core[spark]\"")
    pytest.importorskip("pandas", reason="needs pandas (the spark extra installs it)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java 17+ (java on the PATH or JAVA_HOME)")
    from pyspark.sql import SparkSession

    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "SPARK_LOCAL_IP")}
    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers run this interpreter (ocad-core installed)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (SparkSession.builder.master("local[2]").appName("ocad-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.default.parallelism", "2")
               .config("spark.pyspark.python", sys.executable)
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(n_endpoints=6, duration_s=2 * 3600, seed=1)


def _reference(fleet, cfg, registry):
    mon = Monitor(cfg, registry=registry)
    scores = mon.score_frame(fleet.to_frame().drop(columns=["fault_type"]))
    events = [ev.to_dict() for ev in mon.last_events]
    assert {e["event"] for e in events} == {"open", "update", "resolve"}  # the comparison has teeth
    return scores, events, [d.name for d in mon.detectors]


@pytest.fixture(scope="module")
def reference(fleet):
    """The single-process Monitor (built-in detectors) on the whole fleet, ticks across all endpoints."""
    return _reference(fleet, CFG, PluginRegistry(autoload=False))


@pytest.fixture(scope="module")
def reference_full(fleet):
    """The same with every installed plugin and the shipped ONNX models, when installed."""
    return _reference(fleet, FULL_CFG, None)


def test_batch_wide_equals_single_process(spark, fleet, reference_full):
    """Every installed detector (ONNX sessions on the executors when the ML stack is there)."""
    from ocad.core import spark as ocad_spark

    ref_scores, ref_events, _ = reference_full
    df = spark.createDataFrame(fleet.to_frame())  # fault_type is not a metric: ignored
    res = ocad_spark.score(df, FULL_CFG)  # buckets=None: one per core here (2)
    try:
        events = [r.asDict() for r in res.events.collect()]
        scores = res.scores.toPandas()
    finally:
        res.unpersist()
    assert sorted(map(_key, events)) == sorted(map(_key, ref_events))
    # Evidence and kinds travel too (JSON / array<string>).
    by_id = {(e["event"], e["alert_id"], e["ts"]): e for e in ref_events}
    for e in events:
        ref = by_id[(e["event"], e["alert_id"], e["ts"])]
        assert list(e["kinds"]) == ref["kinds"] and json.loads(e["evidence"]) == ref["evidence"]
    assert list(scores.columns) == list(ref_scores.columns)
    got = scores.sort_values(["endpoint_id", "ts"]).reset_index(drop=True)
    want = ref_scores.sort_values(["endpoint_id", "ts"]).reset_index(drop=True)
    assert (got["endpoint_id"] == want["endpoint_id"]).all()
    np.testing.assert_array_equal(got.drop(columns="endpoint_id").to_numpy(),
                                  want.drop(columns="endpoint_id").to_numpy())


def test_batch_long_format_one_group_per_endpoint(spark, fleet, reference):
    """Long format, Spark timestamps, one group per endpoint; each worker builds its Monitor once."""
    import pandas as pd

    from ocad.core import spark as ocad_spark

    _, ref_events, _ = reference
    long = fleet.to_frame(long=True).drop(columns=["fault_type"])
    long["ts"] = pd.to_datetime(long["ts"], unit="s", utc=True)
    df = spark.createDataFrame(long)
    assert dict(df.dtypes)["ts"] == "timestamp"
    # Endpoint labels reach the executors' Monitors and come back with every event (#13).
    labels = {e.endpoint_id: {"site": e.site, "role": e.role} for e in fleet.endpoints}
    res = ocad_spark.score(df, CFG, autoload_plugins=False, buckets="endpoint", scores=False, labels=labels)
    # ts comes back in the input's type (docs/timestamps.md): a timestamp in, a timestamp out.
    assert dict(res.events.dtypes)["ts"] == "timestamp"
    events = [{**r.asDict(), "ts": r["ts"].timestamp()} for r in res.events.collect()]
    assert sorted(map(_key, events)) == sorted(map(_key, ref_events))
    assert all(json.loads(e["labels"]) == labels[e["endpoint_id"]] for e in events)

    # Ask every Python worker (the pool the scoring UDFs ran in) what its cache holds: 8 tasks
    # that each wait a moment, so both concurrent workers of local[2] answer.
    key = ocad_spark.MonitorSpec.create(CFG, autoload_plugins=False, labels=labels).key

    def probe(pdf):
        time.sleep(0.3)
        info = ocad_spark.cache_info()
        return pd.DataFrame({"pid": [info["pid"]], "builds": [info["builds_by_spec"].get(key, 0)],
                             "groups": [info["groups_by_spec"].get(key, 0)]})

    ids = spark.createDataFrame(pd.DataFrame({"g": np.arange(8)})).repartition(8, "g")
    info = ids.groupBy("g").applyInPandas(probe, "pid long, builds long, groups long").toPandas()
    per_pid = info.groupby("pid").agg({"builds": "max", "groups": "max"})
    # Six endpoint groups, scored by processes that built this Monitor once each.
    assert per_pid["groups"].sum() == 6, per_pid
    assert (per_pid["builds"] <= 1).all() and per_pid["builds"].sum() < 6, per_pid


def test_streaming_micro_batches_equal_single_process(spark, fleet, reference, tmp_path):
    import pandas as pd

    from ocad.core import spark as ocad_spark

    _, ref_events, _ = reference
    frame = fleet.to_frame()
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    # Chronological chunks, one file each; maxFilesPerTrigger=1 makes each its own micro-batch.
    # One cut falls in the middle of the longest alert, so its state must cross micro-batches.
    opened = {e["alert_id"]: e["ts"] for e in ref_events if e["event"] == "open"}
    spans = [(e["ts"] - opened[e["alert_id"]], e["alert_id"]) for e in ref_events
             if e["event"] == "resolve" and e["alert_id"] in opened]
    longest = max(spans)[1]
    t_mid = (opened[longest] + next(e["ts"] for e in ref_events
                                     if e["event"] == "resolve" and e["alert_id"] == longest)) / 2
    ts = np.asarray(fleet.ts)
    cuts = sorted({*np.searchsorted(ts, np.linspace(ts[0], ts[-1], N_CHUNKS + 1)[1:-1]).tolist(),
                   int(np.searchsorted(ts, t_mid))})
    chunks = np.split(ts, cuts)
    for i, chunk in enumerate(chunks):
        frame[frame["ts"].isin(chunk)].to_parquet(src_dir / f"part-{i:03d}.parquet", index=False)
    schema = spark.createDataFrame(frame.head(1)).schema
    src = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(src_dir))
    got: list[tuple[int, dict]] = []

    def collect(batch_df, batch_id):
        got.extend((batch_id, r.asDict()) for r in batch_df.collect())

    q = (ocad_spark.stream(src, CFG, autoload_plugins=False, buckets=3)
         .writeStream.foreachBatch(collect).outputMode("append")
         .option("checkpointLocation", str(tmp_path / "ckpt"))
         .trigger(availableNow=True).start())
    q.awaitTermination(timeout=300)
    progress = [p for p in q.recentProgress if p["numInputRows"] > 0]
    assert len(progress) == len(chunks) >= N_CHUNKS
    assert sorted(_key(e) for _, e in got) == sorted(map(_key, ref_events))
    # State really crossed micro-batches: the longest alert opened in one and resolved in a later one.
    batch_of = {(e["event"], e["alert_id"]): b for b, e in got}
    assert batch_of[("resolve", longest)] > batch_of[("open", longest)]
    # The state rows are JSON strings of export_state documents, one per bucket, readable as data.
    st = (spark.read.format("statestore").load(str(tmp_path / "ckpt"))
          .select("key.ocad_bucket", "value.groupState.*").toPandas())
    docs = [json.loads(s) for s in st["state"]]
    assert sorted(e for d in docs for e in d["endpoint_id"]) == sorted(fleet.endpoint_ids())
    assert list(st["endpoints"]) == [len(d["endpoint_id"]) for d in docs]
    assert all(d["grouping"] == "xxhash64 % 3" and d["count"] for d in docs)


def test_model_dir_reaches_executors_through_sparkfiles(spark, tmp_path):
    import pandas as pd

    from ocad.core import spark as ocad_spark

    mdir = tmp_path / "models-v7"
    (mdir / "tcn").mkdir(parents=True)
    (mdir / "tcn" / "manifest.json").write_text('{"name": "tcn"}')
    spec = ocad_spark.MonitorSpec.create(CFG, model_dir=mdir)
    ocad_spark._ship_models(spark, spec)
    ocad_spark._ship_models(spark, spec)  # shipped once per SparkContext, a second call is a no-op
    (tmp_path / "other" / "models-v7").mkdir(parents=True)
    with pytest.raises(OcadConfigError, match="already shipped"):
        ocad_spark._ship_models(spark, ocad_spark.MonitorSpec.create(CFG, model_dir=tmp_path / "other" / "models-v7"))

    def probe(pdf):
        p = Path(ocad_spark._model_path(spec))
        return pd.DataFrame({"path": [str(p)], "text": [(p / "tcn" / "manifest.json").read_text()]})

    rows = (spark.createDataFrame(pd.DataFrame({"g": [0, 1]})).groupBy("g")
            .applyInPandas(probe, "path string, text string").collect())
    assert {r.text for r in rows} == {'{"name": "tcn"}'}
    assert all(r.path != str(mdir.resolve()) and r.path.endswith("models-v7") for r in rows)


def test_batch_buckets_are_one_task_each(spark, fleet):
    from pyspark.sql import functions as F

    from ocad.core import spark as ocad_spark

    keys = ocad_spark._partition_keys(5)
    assert [r.h for r in spark.createDataFrame([(k,) for k in keys], "k long")
            .select(F.pmod(F.hash("k"), F.lit(5)).alias("h")).collect()] == list(range(5))  # Spark agrees
    mon = Monitor(CFG, registry=PluginRegistry(autoload=False))
    df = spark.createDataFrame(generate_fleet(n_endpoints=40, duration_s=60, seed=2).to_frame())
    data, col = ocad_spark._group_batch(ocad_spark._prepare(df, mon), 5)
    placed = (data.select(F.spark_partition_id().alias("p"), col, "endpoint_id").distinct().toPandas())
    assert data.rdd.getNumPartitions() == 5
    assert placed.groupby("p")[col].nunique().eq(1).all()  # never two buckets in one partition
    assert placed[col].nunique() == 5 and placed.groupby("endpoint_id")["p"].nunique().eq(1).all()


def test_bad_input_is_named(spark, fleet):
    from ocad.core import spark as ocad_spark

    df = spark.createDataFrame(fleet.slice_time(0, 2).to_frame())
    for bad in (0, "bucket", 2.5, True):
        with pytest.raises(OcadConfigError, match="buckets"):
            ocad_spark.score(df, CFG, autoload_plugins=False, buckets=bad)
    with pytest.raises(OcadConfigError, match="no 'ts' column"):
        ocad_spark.score(df.drop("ts"), CFG, autoload_plugins=False)
    with pytest.raises(OcadConfigError, match="none of the Monitor's metrics"):
        ocad_spark.score(df.select("endpoint_id", "ts"), CFG, autoload_plugins=False)
