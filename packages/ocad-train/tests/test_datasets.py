"""Chronological splits without leakage, windows, fill policy, Parquet round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocad.core import OcadConfigError
from ocad.train import (
    SeriesTable,
    build_sequence_datasets,
    forward_fill,
    from_fleet,
    read_sequence_dataset,
    split_boundaries,
    window_spans,
    window_targets,
    write_sequence_dataset,
)


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether any inclusive span of ``a`` intersects any of ``b``."""
    if len(a) == 0 or len(b) == 0:
        return False
    return bool(a[:, 0].min() <= b[:, 1].max() and b[:, 0].min() <= a[:, 1].max())


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 5000), window=st.integers(1, 64), extra_gap=st.integers(0, 10),
       f=st.tuples(st.floats(0.05, 1), st.floats(0.05, 1), st.floats(0.05, 1)))
def test_no_validation_or_test_window_overlaps_a_training_window(
        n: int, window: int, extra_gap: int, f: tuple[float, float, float]) -> None:
    fr = tuple(x / sum(f) for x in f)
    fr = (fr[0], fr[1], 1.0 - fr[0] - fr[1])
    sp = split_boundaries(n, window, fr, gap=window + extra_gap)
    spans = {s: window_spans(window_targets(sp.part(s), window), window) for s in ("train", "validation", "test")}
    for s, sp_ in spans.items():
        if len(sp_):
            assert sp_.min() >= 0 and sp_.max() < n
            lo, hi = sp.part(s)
            assert sp_[:, 0].min() >= lo and sp_[:, 1].max() < hi
    assert not _overlap(spans["train"], spans["validation"])
    assert not _overlap(spans["train"], spans["test"])
    assert not _overlap(spans["validation"], spans["test"])
    # chronological, with a gap of at least `window` samples between parts
    assert sp.train[1] + window <= sp.validation[0] or sp.validation[0] == sp.validation[1]
    assert sp.validation[1] + window <= sp.test[0] or sp.test[0] == sp.test[1]


def test_split_rejects_gap_smaller_than_window() -> None:
    with pytest.raises(OcadConfigError, match="gap"):
        split_boundaries(100, 10, gap=5)
    with pytest.raises(OcadConfigError, match="fractions"):
        split_boundaries(100, 10, (0.5, 0.5, 0.5))


def test_built_datasets_do_not_leak_per_endpoint(fleet: object) -> None:
    t = from_fleet(fleet)
    w = 16
    ds = build_sequence_datasets(t, "udp_echo_rtt_ms", w)
    for e in range(t.n_endpoints):
        spans = {s: window_spans(d.target_index[d.endpoint == e], w) for s, d in ds.items()}
        assert not _overlap(spans["train"], spans["test"])
        assert not _overlap(spans["train"], spans["validation"])
        assert not _overlap(spans["validation"], spans["test"])
        if len(spans["train"]) and len(spans["validation"]):
            assert spans["validation"][:, 0].min() - spans["train"][:, 1].max() > w
    tr = ds["train"]
    # windows hold the series values, the target is the next sample, all labelled normal
    e, i = int(tr.endpoint[5]), int(tr.target_index[5])
    np.testing.assert_array_equal(tr.y[5], t.series(e, "udp_echo_rtt_ms")[i])
    assert t.normal(e)[i - w:i + 1].all()
    assert np.isfinite(tr.x).all() and np.isfinite(tr.y).all()


def test_fill_policy_fills_short_gaps_inside_the_window_only() -> None:
    np.testing.assert_array_equal(forward_fill(np.array([1.0, np.nan, np.nan, 4.0]), 2), [1, 1, 1, 4])
    assert np.isnan(forward_fill(np.array([1.0, np.nan, np.nan, np.nan]), 2)[3])
    v = np.arange(40, dtype=np.float32)
    v[10] = np.nan  # one missing input: filled
    v[20:24] = np.nan  # four missing: windows over them are skipped
    v[30] = np.nan  # a missing target: never a target
    t = SeriesTable.from_arrays(["a"], ["m"], [np.arange(40.0)], [v[:, None]])
    ds = build_sequence_datasets(t, "m", 4, fractions=(0.98, 0.01, 0.01), gap=4)["train"]
    targets = set(ds.target_index.tolist())
    assert {11, 12, 13, 15} <= targets  # the gap at 10 is filled from 9, inside the window
    assert 14 not in targets  # window [10, 13] starts on the gap: nothing before it in the window
    assert 10 not in targets and 30 not in targets  # missing targets are never targets
    assert not targets & set(range(20, 28))  # a 4-sample outage exceeds the fill limit
    np.testing.assert_array_equal(ds.x[ds.target_index == 11][0], [7, 8, 9, 9])


def test_parquet_round_trip_with_schema_version(tmp_path: Path, fleet: object) -> None:
    import pyarrow.parquet as pq

    ds = build_sequence_datasets(from_fleet(fleet), "ecpri_delay_us", 8, max_windows={"test": 500})["test"]
    p = write_sequence_dataset(ds, tmp_path / "test.parquet")
    meta = pq.read_schema(p).metadata[b"ocad"]
    assert b'"schema_version": 1' in meta
    back = read_sequence_dataset(p)
    np.testing.assert_array_equal(back.x, ds.x)
    np.testing.assert_array_equal(back.y, ds.y)
    np.testing.assert_array_equal(back.endpoint, ds.endpoint)
    np.testing.assert_array_equal(back.target_index, ds.target_index)
    assert (back.metric, back.window, back.split) == ("ecpri_delay_us", 8, "test")
    pq.write_table(pq.read_table(p).replace_schema_metadata({b"ocad": b'{"schema_version": 99}'}),
                   tmp_path / "future.parquet")
    with pytest.raises(OcadConfigError, match="schema_version 99"):
        read_sequence_dataset(tmp_path / "future.parquet")
