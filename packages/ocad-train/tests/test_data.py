"""Reading training data: wide / long, CSV / Parquet, epoch / ISO time, user metrics, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ocad.core import OcadConfigError, OcadValidationError
from ocad.train import SeriesTable, as_table, from_fleet, load_table, table_from_frame


def _wide() -> pd.DataFrame:
    return pd.DataFrame({
        "endpoint_id": ["b", "a", "a", "b", "a"],
        "ts": [10.0, 10.0, 0.0, 0.0, 5.0],
        "udp_echo_rtt_ms": [2.0, 1.5, 1.0, 2.5, np.nan],
        "my_kpi": [7, 8, 9, 10, 11],
    })


def test_wide_csv_sorts_per_endpoint_and_keeps_user_columns(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    _wide().to_csv(p, index=False)
    t = load_table(p)
    assert t.endpoint_ids == ("a", "b")
    assert t.metrics == ("udp_echo_rtt_ms", "my_kpi")
    np.testing.assert_array_equal(t.ts[0], [0.0, 5.0, 10.0])
    np.testing.assert_array_equal(t.series(0, "my_kpi"), [9, 11, 8])
    assert np.isnan(t.series(0, "udp_echo_rtt_ms")[1])  # an empty cell is missing, not zero
    assert t.values[0].dtype == np.float32 and t.labels is None


def test_long_parquet_equals_wide_csv(tmp_path: Path) -> None:
    wide = _wide()
    long = wide.melt(id_vars=["endpoint_id", "ts"], var_name="metric", value_name="value").dropna()
    long.to_parquet(tmp_path / "l.parquet")
    wide.to_csv(tmp_path / "w.csv", index=False)
    a, b = load_table(tmp_path / "l.parquet"), load_table(tmp_path / "w.csv")
    assert a.endpoint_ids == b.endpoint_ids and a.metrics == b.metrics
    for e in range(2):
        np.testing.assert_array_equal(a.ts[e], b.ts[e])
        np.testing.assert_array_equal(a.values[e], b.values[e])


def test_iso_timestamps_and_label_column(tmp_path: Path) -> None:
    p = tmp_path / "iso.csv"
    p.write_text("endpoint_id,ts,my_kpi,label\n"
                 "x,2026-01-01T00:00:05Z,1.0,0\n"
                 "x,2026-01-01T00:00:00Z,2.0,1\n")
    t = load_table(p)
    assert t.metrics == ("my_kpi",)
    np.testing.assert_array_equal(t.ts[0], [1767225600.0, 1767225605.0])
    np.testing.assert_array_equal(t.normal(0), [False, True])


@pytest.mark.parametrize(("text", "column", "value"), [
    ("endpoint_id,ts,my_kpi\nx,0,1.0\nx,5,abc\n", "my_kpi", "abc"),
    ("endpoint_id,ts,my_kpi\nx,yesterday,1.0\n", "ts", "yesterday"),
    ("endpoint_id,my_kpi\nx,1.0\n", "ts", None),
])
def test_bad_input_names_column_and_value(tmp_path: Path, text: str, column: str, value: object) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(OcadValidationError) as ei:
        load_table(p)
    assert ei.value.field == column and ei.value.value == value
    assert repr(column) in str(ei.value)


def test_missing_metric_and_file_are_config_errors(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    _wide().to_csv(p, index=False)
    with pytest.raises(OcadConfigError, match="nope"):
        load_table(p, metrics=["nope"])
    with pytest.raises(OcadConfigError, match="does not exist"):
        load_table(tmp_path / "absent.csv")


def test_from_fleet_uses_normal_mask(fleet: object) -> None:
    t = from_fleet(fleet)
    assert t.n_endpoints == fleet.values.shape[0] and t.metrics == tuple(fleet.metrics)  # type: ignore[attr-defined]
    nm = fleet.normal_mask()  # type: ignore[attr-defined]
    for e in range(t.n_endpoints):
        np.testing.assert_array_equal(t.normal(e), nm[e])
    assert as_table(t) is t


def test_series_table_checks_shapes() -> None:
    with pytest.raises(ValueError, match="do not match"):
        SeriesTable(endpoint_ids=["a"], metrics=["m"], ts=[np.arange(3.0)], values=[np.ones((2, 1))])


@settings(max_examples=60, deadline=None)
@given(cell=st.text(max_size=8))
@example(cell="1E100")  # finite as float64, inf as the float32 the table stores
def test_any_cell_text_parses_or_raises_a_validation_error_naming_the_column(cell: str) -> None:
    df = pd.DataFrame({"endpoint_id": ["a", "a"], "ts": [0.0, 5.0], "my_kpi": ["1.5", cell]})
    try:
        t = table_from_frame(df)
    except OcadValidationError as exc:
        assert exc.field == "my_kpi" and exc.value == cell and exc.index == 1
    else:
        v = t.series(0, "my_kpi")[1]
        assert np.isnan(v) if not cell.strip() else np.isfinite(v)


def test_duplicates_are_dropped_and_counted_and_unsorted_rows_sorted(tmp_path: Path) -> None:
    # As the Monitor does: the first sample of an (endpoint, ts) is kept, the others counted.
    p = tmp_path / "dup.csv"
    p.write_text("endpoint_id,ts,my_kpi\nx,10,3.0\nx,0,1.0\nx,0,2.0\nx,5,\nx,10,4.0\n")
    t = load_table(p)
    np.testing.assert_array_equal(t.ts[0], [0.0, 5.0, 10.0])
    np.testing.assert_array_equal(t.series(0, "my_kpi")[[0, 2]], [1.0, 3.0])
    assert np.isnan(t.series(0, "my_kpi")[1])  # NaN = missing, kept as a sample
    assert t.dropped == {"duplicate_ts": 2}
    long = pd.DataFrame({"endpoint_id": ["x"] * 3, "ts": [0.0, 0.0, 5.0], "metric": ["m"] * 3,
                         "value": [1.0, 9.0, 2.0]})
    t = table_from_frame(long)
    np.testing.assert_array_equal(t.series(0, "m"), [1.0, 2.0])
    assert t.dropped == {"duplicate_ts": 1}


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_fault_type_labels_normal_and_failure_ts_is_not_a_metric(tmp_path: Path, layout: str) -> None:
    wide = pd.DataFrame({"endpoint_id": ["a"] * 5, "ts": [0.0, 1.0, 2.0, 3.0, 4.0],
                         "m": [1.0, 2.0, 3.0, 4.0, 5.0], "k": [5.0, 4.0, 3.0, 2.0, 1.0],
                         "fault_type": ["", "none", "link_flap", None, "Normal"],
                         "failure_ts": [np.nan, np.nan, 3.0, np.nan, np.nan]})
    df = wide if layout == "wide" else wide.melt(id_vars=["endpoint_id", "ts", "fault_type", "failure_ts"],
                                                 value_vars=["m", "k"], var_name="metric", value_name="value")
    df.to_csv(tmp_path / "l.csv", index=False)
    t = load_table(tmp_path / "l.csv")
    assert sorted(t.metrics) == ["k", "m"]
    np.testing.assert_array_equal(t.normal(0), [True, True, False, True, True])
