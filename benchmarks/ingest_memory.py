"""Peak memory of `ocad detect` on a large file: generate it, then run the CLI under /usr/bin/time.

    python benchmarks/ingest_memory.py --endpoints 1000 --samples 10000 --dir /tmp/ocad-big
    # -> /tmp/ocad-big/fleet.parquet and fleet.csv.gz (10 M rows, 5 metrics, time-sorted), then
    /usr/bin/time -v ocad detect /tmp/ocad-big/fleet.parquet --core-only --out /tmp/ocad-big/ev.parquet

The file is written tick block by tick block (one Parquet row group of 100 ticks each), so
generating it never holds more than one block either. Values: the five O-RAN metrics around
their usual levels with noise, no faults (the point is memory, not detection).
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

T0 = 1_767_225_600.0


def block(eps: np.ndarray, t0: int, t1: int, rng: np.random.Generator) -> pa.Table:
    n_e, n_t = eps.size, t1 - t0
    ts = np.repeat(T0 + 5.0 * np.arange(t0, t1), n_e)
    ep = np.tile(eps, n_t)
    n = n_e * n_t
    return pa.table({
        "endpoint_id": pa.array(ep, pa.string()),
        "ts": ts,
        "udp_echo_rtt_ms": 4.0 + rng.gamma(2.0, 0.15, n),
        "ecpri_delay_us": 50.0 + rng.normal(0.0, 2.0, n),
        "lbm_rtt_ms": 4.0 + rng.gamma(2.0, 0.15, n),
        "lbm_success": (rng.random(n) > 0.001).astype(np.float64),
        "ccm_miss_count": (rng.random(n) < 0.002).astype(np.float64),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoints", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--dir", default="/tmp/ocad-big")
    ap.add_argument("--csv", action="store_true", help="also write fleet.csv.gz")
    a = ap.parse_args()
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    eps = np.array([f"site{i // 10:03d}-ru-{i:05d}" for i in range(a.endpoints)], dtype=object)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    step = 100
    writer = None
    csv_out = gzip.open(d / "fleet.csv.gz", "wb", compresslevel=1) if a.csv else None
    for t0 in range(0, a.samples, step):
        tab = block(eps, t0, min(t0 + step, a.samples), rng)
        if writer is None:
            writer = pq.ParquetWriter(d / "fleet.parquet", tab.schema)
        writer.write_table(tab, row_group_size=tab.num_rows)
        if csv_out is not None:
            buf = pa.BufferOutputStream()
            pcsv.write_csv(tab, buf, pcsv.WriteOptions(include_header=t0 == 0))
            csv_out.write(buf.getvalue().to_pybytes())
    assert writer is not None
    writer.close()
    if csv_out is not None:
        csv_out.close()
    rows = a.endpoints * a.samples
    print(f"wrote {rows} rows ({a.endpoints} endpoints x {a.samples} samples) to {d} "
          f"in {time.perf_counter() - t:.0f} s: "
          + ", ".join(f"{p.name} {p.stat().st_size / 1e6:.0f} MB" for p in sorted(d.glob("fleet.*"))))


if __name__ == "__main__":
    main()
