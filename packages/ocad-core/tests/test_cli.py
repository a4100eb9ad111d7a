"""The ``ocad`` command line (``ocad.core.cli``): simulate, detect, plugins, demo, errors."""

from __future__ import annotations

import csv
import json

import attrs
import pytest

from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet
from ocad.core.plugins import _registry
from ocad.core._metrics import ORAN_METRICS
from ocad.core.cli import main

METRICS = [s.name for s in ORAN_METRICS]


@pytest.fixture(autouse=True)
def builtins_only(monkeypatch):
    """The CLI uses the process-wide registry: make it the built-ins only, whatever is installed."""
    monkeypatch.setattr(_registry, "_default", PluginRegistry(autoload=False))


def test_simulate_writes_the_fleet(tmp_path, capsys):
    out, events = tmp_path / "fleet.csv", tmp_path / "events.json"
    rc = main(["simulate", "--endpoints", "3", "--hours", "0.25", "--seed", "4", "--out", str(out),
               "--events", str(events)])
    assert rc == 0
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["endpoint_id", "ts", *METRICS, "fault_type"]
    assert len(rows) - 1 == 3 * 180
    assert len({r[0] for r in rows[1:]}) == 3
    assert json.loads(events.read_text()) == []  # no fault before the 30 min warm-up
    assert "wrote 3 endpoints x 180 samples" in capsys.readouterr().out


def test_simulate_long_and_fault_choice(tmp_path, capsys):
    out = tmp_path / "long.csv"
    assert main(["simulate", "--endpoints", "2", "--hours", "0.1", "--long", "--faults", "none",
                 "--out", str(out)]) == 0
    with open(out, newline="", encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == ["endpoint_id", "ts", "metric", "value", "fault_type"]
    assert main(["simulate", "--faults", "spike,meteor", "--out", str(tmp_path / "x.csv")]) == 2
    assert "meteor" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fault_csvs(tmp_path_factory):
    """2 endpoints × 480 ticks with a hand-made fault on the second, as wide and long CSV.

    The fault starts after the default warm-up (1800 s of sample time at 5 s = 360 samples).
    """
    d = tmp_path_factory.mktemp("detect")
    base = generate_fleet(2, 480 * 5.0, seed=5, faults=False)
    v = base.values.copy()
    v[1, 400:420, 0] *= 10.0
    v[1, 400:420, 3] = 0.0
    v[1, 400:420, 4] = 4.0
    fleet = attrs.evolve(base, values=v)
    wide, long = d / "wide.csv", d / "long.csv"
    fleet.write_csv(wide)
    fleet.write_csv(long, long=True)
    return wide, long, str(fleet.endpoint_ids()[1]), (float(fleet.ts[400]), float(fleet.ts[419]))


def test_detect_wide_and_long_give_the_same_events(fault_csvs, tmp_path, capsys):
    wide, long, *_ = fault_csvs
    outs = []
    for src in (wide, long):
        out = tmp_path / f"{src.stem}.jsonl"
        assert main(["detect", str(src), "--core-only", "--format", "jsonl", "--out", str(out)]) == 0
        text = capsys.readouterr().out
        outs.append([json.loads(line) for line in out.read_text().splitlines()])
        assert f"events written to {out}" in text
        assert text.startswith("960 records, 0 values rejected")
    assert outs[0] == outs[1]
    opens = [e for e in outs[0] if e["event"] == "open"]
    assert len(opens) == 1 and opens[0]["endpoint_id"] == fault_csvs[2]
    assert opens[0]["evidence"] and len(opens[0]["kinds"]) >= 2
    t0, t1 = fault_csvs[3]
    assert t0 <= opens[0]["opened_ts"] <= t0 + 5 * 5.0  # confirmed within a few samples of the fault
    assert outs[0][-1]["event"] == "resolve" and outs[0][-1]["resolved_ts"] > t1


def test_detect_default_output_csv(fault_csvs, tmp_path, capsys):
    wide, *_ = fault_csvs
    src = tmp_path / "in.csv"
    src.write_bytes(wide.read_bytes())
    assert main(["detect", str(src), "--core-only"]) == 0
    out = tmp_path / "in.alerts.csv"
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["event"] for r in rows if r["event"] != "update"] == ["open", "resolve"]
    assert len({r["alert_id"] for r in rows}) == 1
    assert f"events written to {out}" in capsys.readouterr().out


def test_plugins_lists_builtin_and_rule_detector(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.split()[:1] == ["builtin"] and line.split()[-1] == "builtin" for line in lines)
    rule = next(line for line in lines if line.startswith("rule "))
    assert rule.split()[1] == "rule" and "udp_echo_rtt_ms" in rule
    assert "metrics: udp_echo_rtt_ms" in out


def test_demo_small(tmp_path, capsys):
    out, summary = tmp_path / "demo" / "alerts.jsonl", tmp_path / "summary.json"
    rc = main(["demo", "--endpoints", "8", "--hours", "1.5", "--core-only", "--out", str(out),
               "--json", str(summary)])
    assert rc == 0
    assert out.is_file()
    events = [json.loads(line) for line in out.read_text().splitlines()]
    s = json.loads(summary.read_text())
    assert s["alerts"] == len({e["alert_id"] for e in events})
    assert sum(e["event"] == "open" for e in events) == s["alerts"]
    text = capsys.readouterr().out
    assert "OCAD demo: 8 endpoints, 1080 ticks" in text and f"alert events written to {out}" in text


def test_bad_file_path_exit_code_3(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    assert main(["detect", str(missing), "--core-only"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ocad detect: error:") and "nope.csv" in err and "does not exist" in err


def test_file_without_required_columns(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("endpoint,time,udp_echo_rtt_ms\na,0,1\n", encoding="utf-8")
    assert main(["detect", str(bad), "--core-only"]) == 3
    err = capsys.readouterr().err
    assert "'endpoint_id'" in err and "bad.csv" in err


def test_bad_config_exit_code_2(tmp_path, fault_csvs, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[monitor]\nwindow = -3\n", encoding="utf-8")
    assert main(["detect", str(fault_csvs[0]), "--config", str(cfg)]) == 2
    assert "monitor.window = -3" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: ocad" in capsys.readouterr().out
