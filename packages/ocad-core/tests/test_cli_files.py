"""CLI conventions (docs/cli.md): files in every form, stdin/stdout, exit codes, global options."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import logging
import sys

import attrs
import numpy as np
import pytest

from ocad.core import cli
from ocad.core.cli import main
from ocad.core.plugins import PluginRegistry, _registry
from ocad.core.tooling import generate_fleet


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch):
    monkeypatch.setattr(_registry, "_default", PluginRegistry(autoload=False))


@pytest.fixture(scope="module")
def fleet():
    """2 endpoints x 480 ticks with a hand-made fault on the second, after the warm-up (as in test_cli)."""
    base = generate_fleet(2, 480 * 5.0, seed=5, faults=False)
    v = base.values.copy()
    v[1, 400:420, 0] *= 10.0
    v[1, 400:420, 3] = 0.0
    v[1, 400:420, 4] = 4.0
    return attrs.evolve(base, values=v)


@pytest.fixture(scope="module")
def frame(fleet):
    pytest.importorskip("pyarrow")
    return fleet.to_frame().drop(columns=["fault_type"])


def _error_lines(err):
    """stderr without the progress lines: what an error printed."""
    assert "Traceback" not in err
    return [x for x in err.splitlines() if x.startswith("ocad")]


def _rounded(x):
    """Floats to 9 significant digits: chunking may group samples into other numpy calls, whose
    summation order can move the last bits of a score; events must agree, not their last bits."""
    if isinstance(x, float):
        return float(f"{x:.9g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_rounded(v) for v in x]
    return x


def _events(path):
    return [_rounded(json.loads(line)) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(fleet, tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    src = d / "wide.csv"
    fleet.write_csv(src)
    out = d / "ref.jsonl"
    assert main(["detect", str(src), "--core-only", "--out", str(out)]) == 0
    ev = _events(out)
    assert [e["event"] for e in ev if e["event"] != "update"] == ["open", "resolve"]
    return src, ev


def _detect(args, tmp_path, name="out.jsonl"):
    out = tmp_path / name
    assert main(["detect", *args, "--core-only", "--out", str(out)]) == 0
    return _events(out) if name.endswith(".jsonl") else out


# -- inputs --------------------------------------------------------------------------------------------
def test_gzip_csv_and_small_chunks_give_the_same_events(reference, tmp_path):
    src, ref = reference
    gz = tmp_path / "wide.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    assert _detect([str(gz)], tmp_path) == ref
    assert _detect([str(src), "--chunk-rows", "7"], tmp_path) == ref
    # gzip found by its magic bytes, whatever the name says
    odd = tmp_path / "wide.data"
    odd.write_bytes(gz.read_bytes())
    assert _detect([str(odd)], tmp_path) == ref


def test_long_csv_in_small_chunks_keeps_groups_whole(reference, fleet, tmp_path, capsys):
    _, ref = reference
    long = tmp_path / "long.csv"
    fleet.write_csv(long, long=True)
    # 5 metric rows per (endpoint, ts): chunks of 7 rows cut groups, which are carried over.
    assert _detect([str(long), "--chunk-rows", "7"], tmp_path) == ref
    assert "960 records, 0 values rejected" in capsys.readouterr().out


def test_csv_without_pyarrow_gives_the_same_events(reference, fleet, tmp_path, monkeypatch):
    src, ref = reference
    long = tmp_path / "long.csv"
    fleet.write_csv(long, long=True)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # the standard-library reader
    assert _detect([str(src), "--chunk-rows", "50"], tmp_path) == ref
    assert _detect([str(long), "--chunk-rows", "9"], tmp_path) == ref


def test_parquet_file_directory_and_partitioned_dataset(reference, frame, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    _, ref = reference
    f = tmp_path / "wide.parquet"
    frame.to_parquet(f, index=False, row_group_size=50)
    assert _detect([str(f), "--chunk-rows", "33"], tmp_path) == ref
    d = tmp_path / "parts"
    d.mkdir()
    half = len(frame) // 2
    frame.iloc[:half].to_parquet(d / "part-0.parquet", index=False)
    frame.iloc[half:].to_parquet(d / "part-1.parquet", index=False)
    assert _detect([str(d)], tmp_path) == ref
    hive = tmp_path / "hive"
    pq.write_to_dataset(pa.Table.from_pandas(frame.assign(site=np.where(frame["endpoint_id"] == frame[
        "endpoint_id"].iloc[0], "paris", "lyon")), preserve_index=False), hive, partition_cols=["site"])
    assert _detect([str(hive)], tmp_path) == ref  # site=... directories; site counted as an unknown metric


def test_timestamps_in_files_follow_the_policy(reference, frame, fleet, tmp_path, capsys):
    """ISO-8601 with an offset in CSV, tz-aware Parquet: accepted; naive: refused (3) unless --tz."""
    import pandas as pd

    _, ref = reference
    aware = frame.assign(ts=pd.to_datetime(frame["ts"], unit="s", utc=True).dt.tz_convert("Asia/Tokyo"))
    iso = tmp_path / "iso.csv"
    aware.assign(ts=aware["ts"].map(lambda t: t.isoformat())).to_csv(iso, index=False)
    assert "+09:00" in iso.read_text().splitlines()[1]
    assert _detect([str(iso)], tmp_path) == ref
    pq = tmp_path / "aware.parquet"
    aware.to_parquet(pq, index=False)
    assert _detect([str(pq)], tmp_path) == ref
    naive = aware.assign(ts=aware["ts"].dt.tz_localize(None))  # Tokyo wall-clock times
    npq, ncsv = tmp_path / "naive.parquet", tmp_path / "naive.csv"
    naive.to_parquet(npq, index=False)
    naive.to_csv(ncsv, index=False)
    capsys.readouterr()
    for src in (npq, ncsv):
        assert main(["detect", str(src), "--core-only", "--out", str(tmp_path / "x.jsonl")]) == 3
        err = _error_lines(capsys.readouterr().err)
        assert len(err) == 1 and "no time zone" in err[0] and "--tz" in err[0]
        assert _detect([str(src), "--tz", "Asia/Tokyo"], tmp_path) == ref
    ms = frame.assign(ts=frame["ts"] * 1000)
    ms.to_csv(tmp_path / "ms.csv", index=False)
    assert main(["detect", str(tmp_path / "ms.csv"), "--core-only", "--out", str(tmp_path / "x.jsonl")]) == 3
    assert "milliseconds" in capsys.readouterr().err


def test_stdin_and_stdout(reference, frame, tmp_path, monkeypatch, capsys):
    _, ref = reference
    src = reference[0]

    def stdin(data: bytes):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))

    stdin(src.read_bytes())
    assert main(["detect", "-", "--core-only", "--format", "jsonl"]) == 0  # stdin in: stdout out
    cap = capsys.readouterr()
    assert [_rounded(json.loads(x)) for x in cap.out.splitlines()] == ref
    assert "events written to standard output" in cap.err
    stdin(gzip.compress(src.read_bytes()))
    assert main(["detect", "-", "--core-only", "--out", str(tmp_path / "o.jsonl")]) == 0
    assert _events(tmp_path / "o.jsonl") == ref
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    stdin(buf.getvalue())
    assert main(["detect", "-", "--core-only", "--out", str(tmp_path / "p.jsonl")]) == 0
    assert _events(tmp_path / "p.jsonl") == ref
    capsys.readouterr()
    assert main(["detect", str(src), "--core-only", "--out", "-", "--format", "csv"]) == 0
    cap = capsys.readouterr()
    assert cap.out.splitlines()[0].startswith("event,ts,alert_id") and not (tmp_path / "-").exists()


def test_parquet_events_out(reference, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    src, ref = reference
    out = _detect([str(src)], tmp_path, name="events.parquet")
    got = pd.read_parquet(out)
    assert list(got["event"]) == [e["event"] for e in ref]
    assert list(got["alert_id"]) == [e["alert_id"] for e in ref]
    np.testing.assert_allclose(got["score"], [e["score"] for e in ref])
    assert [list(k) for k in got["kinds"]] == [e["kinds"] for e in ref]
    assert [_rounded(json.loads(x)) for x in got["evidence"]] == [e["evidence"] for e in ref]


def test_summary_counts_missing_only_for_the_files_metrics(fleet, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    df = fleet.to_frame()[["endpoint_id", "ts", "udp_echo_rtt_ms", "lbm_rtt_ms"]].copy()
    df.loc[:9, "lbm_rtt_ms"] = np.nan
    src = tmp_path / "two.csv"
    df.to_csv(src, index=False)
    capsys.readouterr()
    assert main(["detect", str(src), "--core-only", "--out", str(tmp_path / "o.csv")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("960 records, 0 values rejected, 11 missing (of 2 metrics in the file)"), out
    assert isinstance(pd, object)


# -- commands and conventions ----------------------------------------------------------------------------
def test_version(capsys):
    from ocad.core import __version__

    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out.startswith(f"ocad {__version__} (ocad-core {__version__}")


def test_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {p["name"] for p in doc["plugins"]} >= {"builtin"}
    rule = next(d for d in doc["detectors"] if d["name"] == "rule")
    assert "udp_echo_rtt_ms" in rule["metrics"]
    assert doc["metrics"][0]["name"] == "udp_echo_rtt_ms" and "unit" in doc["metrics"][0]
    assert doc["failures"] == [] and doc["artifact_errors"] == []


def test_global_options_before_or_after_the_command(reference, tmp_path, caplog, capsys):
    src, _ = reference
    for argv in (["-q", "detect", str(src)], ["detect", str(src), "-q"], ["detect", "-v", str(src), "--debug"]):
        assert main([*argv, "--core-only", "--out", str(tmp_path / "o.jsonl")]) == 0
    assert main(["plugins", "-v"]) == 0
    args = cli.build_parser().parse_args(["detect", "f.csv", "-q", "-v"])
    assert args.quiet and args.verbose and not args.debug
    args = cli.build_parser().parse_args(["-v", "detect", "f.csv"])
    assert args.verbose and not args.quiet  # the subcommand's default does not undo the global -v


def test_unknown_detector_table_warns_with_the_known_names(reference, tmp_path, caplog, capsys):
    src, _ = reference
    cfg = tmp_path / "typo.toml"
    cfg.write_text("[monitor]\nuse_shipped_models = false\n[detectors.rulee]\nweight = 2.0\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ocad"):
        assert main(["detect", str(src), "--config", str(cfg), "--out", str(tmp_path / "o.csv")]) == 0
    msg = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "[detectors.rulee]" in msg and "typo" in msg and "rule" in msg.split("Detectors:")[1]
    caplog.clear()
    cfg.write_text("[detectors.rule]\nweight = 2.0\n[detectors.residual]\nweight = 1.0\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="ocad"):
        assert main(["detect", str(src), "--config", str(cfg), "--out", str(tmp_path / "o.csv")]) == 0
    assert not [r for r in caplog.records if "typo" in r.getMessage()]


def test_exit_codes(reference, tmp_path, monkeypatch, capsys):
    src, _ = reference
    with pytest.raises(SystemExit) as ei:  # usage: argparse
        main(["detect", str(src), "--no-such-option"])
    assert ei.value.code == cli.EXIT_USAGE == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("endpoint_id,ts,udp_echo_rtt_ms\n,0,1\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["detect", str(bad), "--core-only", "--out", str(tmp_path / "o.csv")]) == cli.EXIT_DATA == 3
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "endpoint_id" in err[0]
    assert main(["detect", str(src), "--tz", "Mars/Olympus", "--out", str(tmp_path / "o.csv")]) == 3

    def boom(args):
        raise RuntimeError("detector exploded")

    monkeypatch.setattr(cli, "cmd_plugins", boom)
    parser = cli.build_parser()
    parser._subparsers._group_actions[0].choices["plugins"].set_defaults(func=boom)
    assert cli.run(parser, ["plugins"]) == cli.EXIT_INTERNAL == 1
    err = capsys.readouterr().err
    assert "RuntimeError: detector exploded" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(RuntimeError, match="exploded"):
        cli.run(parser, ["plugins", "--debug"])


def test_missing_extra_is_reported_before_any_work(monkeypatch, tmp_path, capsys):
    import ocad.core.tooling._quality as quality

    def no_work(*a, **k):
        raise AssertionError("the evaluation ran although matplotlib is missing")

    monkeypatch.setattr(quality, "evaluate", no_work)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["report", "--out", str(tmp_path / "r.html")]) == cli.EXIT_MISSING_EXTRA == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ocad-core[report]" in err
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    assert main(["detect", str(tmp_path / "x.parquet")]) == 4
    assert "ocad-core[io]" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "x.parquet"), "--out", "-", "--format", "parquet"]) == 4


def test_calibrate_reads_files_in_chunks(reference, tmp_path):
    src, _ = reference
    out = tmp_path / "cal.json"
    assert main(["calibrate", "--data", str(src), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["source"] == str(src) and doc["detectors"]
    assert dt.datetime  # noqa: B018 - imported for the module's timestamp tests
