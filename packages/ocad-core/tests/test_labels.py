"""Endpoint labels: validation, inventory files, alerts, event formats, snapshot, grouping."""

from __future__ import annotations

import csv
import json

import pytest

from ocad.core import Alert, EndpointLabels, Monitor, OcadValidationError, group_alerts, load_labels
from ocad.core._labels import labels_from_records
from ocad.core.cli import run_fleet
from ocad.core.tooling import generate_fleet, write_events

CORE = {"monitor": {"use_shipped_models": False}}


@pytest.fixture(scope="module")
def fleet():
    # site-wide faults only: several endpoints of one site alert together
    return generate_fleet(12, 2 * 3600, 5.0, seed=1, n_sites=3)


@pytest.fixture(scope="module")
def inventory(fleet):
    return {e.endpoint_id: {"site": e.site, "role": e.role, "vendor": "acme" if i % 2 else "globex"}
            for i, e in enumerate(fleet.endpoints)}


@pytest.fixture(scope="module")
def run(fleet, inventory):
    mon = Monitor(CORE, labels=inventory)
    return mon, run_fleet(mon, fleet, progress=False)


@pytest.mark.parametrize("name", ["1site", "si-te", "site.name", "", "__meta", "alertname", "endpoint_id",
                                  "severity", 3])
def test_bad_label_names_are_refused_with_the_name(name):
    with pytest.raises(OcadValidationError) as exc:
        EndpointLabels({"oru-1": {name: "x"}})
    assert repr(name) in str(exc.value)


def test_values_are_strings_and_empty_means_absent():
    lab = EndpointLabels({"a": {"rack": 3, "site": "p", "pod": "", "row": None, "z": float("nan")}})
    assert lab.get("a") == {"rack": "3", "site": "p"}
    with pytest.raises(OcadValidationError, match="strings or numbers"):
        EndpointLabels({"a": {"site": ["p"]}})
    with pytest.raises(OcadValidationError, match="endpoint id"):
        EndpointLabels({"": {"site": "p"}})


def test_update_replaces_an_endpoints_labels_and_validates_first():
    lab = EndpointLabels({"a": {"site": "p"}, "b": {"site": "q"}})
    with pytest.raises(OcadValidationError):
        lab.update({"a": {"site": "r"}, "b": {"bad-name": "x"}})
    assert lab.get("a") == {"site": "p"}  # nothing applied
    lab.update({"a": {"role": "du"}, "b": {}})
    assert lab.to_dict() == {"a": {"role": "du"}}
    lab.update({"c": {"site": "s"}}, replace=True)
    assert lab.to_dict() == {"c": {"site": "s"}}


def test_inventory_csv_and_conflicts(tmp_path):
    p = tmp_path / "inv.csv"
    p.write_text("endpoint_id,site,role\noru-1,par-1,o-ru\noru-2,par-1,\noru-1,par-1,o-ru\n")
    assert load_labels(p) == {"oru-1": {"role": "o-ru", "site": "par-1"}, "oru-2": {"site": "par-1"}}
    assert load_labels(p, columns=["site"]) == {"oru-1": {"site": "par-1"}, "oru-2": {"site": "par-1"}}
    p.write_text("endpoint_id,site\noru-1,par-1\noru-1,lyo-2\n")
    with pytest.raises(OcadValidationError, match=r"labels\['oru-1'\]\['site'\].*conflicts with 'par-1'"):
        load_labels(p)
    p.write_text("id,site\noru-1,par-1\n")
    with pytest.raises(OcadValidationError, match="no 'endpoint_id' column"):
        load_labels(p)
    with pytest.raises(OcadValidationError, match="does not exist"):
        load_labels(tmp_path / "nope.csv")
    p.write_text("endpoint_id,site-name\noru-1,par-1\n")
    with pytest.raises(OcadValidationError, match="site-name"):
        load_labels(p)


def test_inventory_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({"endpoint_id": ["a", "b"], "site": ["p", "q"], "rack": [1, 2]})
    df.to_parquet(tmp_path / "inv.parquet")
    want = {"a": {"rack": "1", "site": "p"}, "b": {"rack": "2", "site": "q"}}
    assert load_labels(tmp_path / "inv.parquet") == want
    assert Monitor(CORE, labels=df).labels.to_dict() == want


def test_labels_from_sample_columns():
    recs = [{"endpoint_id": "a", "ts": 0.0, "site": "p", "udp_echo_rtt_ms": 1.0},
            {"endpoint_id": "a", "ts": 5.0, "site": "p", "udp_echo_rtt_ms": 1.0},
            {"endpoint_id": "b", "ts": 0.0, "site": None, "udp_echo_rtt_ms": 1.0}]
    assert labels_from_records(recs, ["site"]) == {"a": {"site": "p"}, "b": {}}


def test_alerts_carry_the_labels_of_their_endpoint(run, inventory):
    _, events = run
    opened = [ev for ev in events if ev.event == "open"]
    assert opened
    for ev in events:
        assert ev.alert.labels == inventory[ev.alert.endpoint_id]


def test_labels_set_later_apply_to_new_alerts_only(fleet, inventory):
    mon = Monitor(CORE)
    half = len(fleet.ts) // 2
    events = []
    for t in range(len(fleet.ts)):
        if t == half:
            mon.set_labels(inventory)
        events += mon.observe_columns(*fleet.columns(t))
    assert mon.labels.to_dict() == {e: dict(sorted(v.items())) for e, v in inventory.items()}
    by_id: dict[str, list] = {}
    for ev in events:
        by_id.setdefault(ev.alert.alert_id, []).append(ev)
    for evs in by_id.values():
        assert len({tuple(sorted(ev.alert.labels.items())) for ev in evs}) == 1, "labels changed mid-alert"
    early = [ev for ev in events if ev.event == "open" and ev.ts < fleet.ts[half]]
    late = [ev for ev in events if ev.event == "open" and ev.ts >= fleet.ts[half]]
    assert early and late
    assert all(ev.alert.labels == {} for ev in early)
    assert all(ev.alert.labels == inventory[ev.alert.endpoint_id] for ev in late)


def test_every_event_format_carries_labels(run, tmp_path):
    _, events = run
    for suffix in ("json", "jsonl"):
        p = write_events(events, tmp_path / f"ev.{suffix}")
        text = p.read_text()
        docs = json.loads(text) if suffix == "json" else [json.loads(line) for line in text.splitlines()]
        assert [d["labels"] for d in docs] == [dict(ev.alert.labels) for ev in events]
        assert [Alert.from_dict({k: v for k, v in d.items() if k not in ("event", "ts")}) for d in docs] == \
            [ev.alert for ev in events]
    with open(write_events(events, tmp_path / "ev.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["labels"] == ";".join(f"{k}={v}" for k, v in sorted(events[0].alert.labels.items()))


def test_alert_from_dict_without_labels_reads_back_with_none(run):
    _, events = run
    d = events[0].alert.to_dict()
    del d["labels"]
    assert Alert.from_dict(d).labels == {}
    hash(events[0].alert)  # still hashable


def test_snapshot_round_trips_labels_and_reads_old_snapshots(run, fleet, tmp_path):
    mon, _ = run
    mon.set_labels({"extra-1": {"site": "x;y=z"}})
    mon.snapshot(tmp_path / "s")
    other = Monitor(CORE).restore(tmp_path / "s")
    assert other.labels.to_dict() == mon.labels.to_dict()
    assert other.labels.get("extra-1") == {"site": "x;y=z"}
    # New alerts after the restore get the restored labels.
    assert other.policy.endpoint_labels("extra-1") == {"site": "x;y=z"}
    # A snapshot written before labels existed: no "labels" key; the Monitor keeps its own.
    doc = json.loads((tmp_path / "s" / "state.json").read_text())
    del doc["labels"]
    for st in doc["policy"]["states"].values():
        if st["alert"]:
            del st["alert"]["labels"]
    (tmp_path / "s" / "state.json").write_text(json.dumps(doc))
    keep = Monitor(CORE, labels={"a": {"site": "p"}}).restore(tmp_path / "s")
    assert keep.labels.to_dict() == {"a": {"site": "p"}}


def test_group_alerts_finds_the_site_of_a_site_wide_fault(run, fleet):
    _, events = run
    site_wide = [e for e in fleet.events if e.fault_type == "site_wide"]
    assert site_wide, "the fleet has a site-wide fault"
    opened = [ev for ev in events if ev.event == "open"]
    groups = group_alerts(opened, "site")
    biggest = next(iter(groups))
    assert biggest in {e.site for e in site_wide}
    assert sum(len(v) for v in groups.values()) == len(opened)
    two = group_alerts(opened, ("site", "severity"))
    assert all(isinstance(k, tuple) and len(k) == 2 for k in two)
    assert group_alerts(opened, "vendor_missing") == {None: opened}
    with pytest.raises(OcadValidationError):
        group_alerts(opened, "bad-name")


def test_monitor_open_alerts_by_label(fleet, inventory):
    mon = Monitor(CORE, labels=inventory)
    for t in range(len(fleet.ts)):
        mon.observe_columns(*fleet.columns(t))
        if mon.open_alerts():
            break
    grouped = mon.open_alerts(by="site")
    assert sum(len(v) for v in grouped.values()) == len(mon.open_alerts()) > 0
    assert all(a.labels["site"] == site for site, v in grouped.items() for a in v)


def test_every_constructor_takes_labels(inventory, tmp_path):
    lab = {"a": {"site": "p"}}
    assert Monitor.from_defaults(use_shipped_models=False, labels=lab).labels.to_dict() == lab
    cfg = tmp_path / "c.toml"
    cfg.write_text("[monitor]\nuse_shipped_models = false\n")
    assert Monitor.from_config(cfg, labels=lab).labels.to_dict() == lab
    with pytest.raises(OcadValidationError):
        Monitor.from_defaults(use_shipped_models=False, labels={"a": {"bad-name": "x"}})
