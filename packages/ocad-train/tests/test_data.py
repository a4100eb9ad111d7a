"""Reading training data: wide / long, CSV / Parquet, epoch / ISO time, user metrics, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
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
    ("endpoint_id,ts,my_kpi\nx,0,1.0\nx,0,2.0\n", "ts", 0.0),
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
def test_any_cell_text_parses_or_raises_a_validation_error_naming_the_column(cell: str) -> None:
    df = pd.DataFrame({"endpoint_id": ["a", "a"], "ts": [0.0, 5.0], "my_kpi": ["1.5", cell]})
    try:
        t = table_from_frame(df)
    except OcadValidationError as exc:
        assert exc.field == "my_kpi" and exc.value == cell and exc.index == 1
    else:
        v = t.series(0, "my_kpi")[1]
        assert np.isnan(v) if not cell.strip() else np.isfinite(v)
