"""``ocad report``: one self-contained HTML file with the quality tables and plots.

For exactly the number of endpoints asked for (one per fault type first, then one
without faults, then more faulty and normal ones while there are) it plots the metric
time series with the labelled faults shaded and the alerts marked, and a score panel:
the composite, the alert policy's open threshold, and the (at most four) detectors that
contributed most on that endpoint, legend outside the data. The x-axis is clock time
(UTC, HH:MM). The metric tables are the
ones ``ocad evaluate`` prints. Figures are PNGs embedded as base64 ``data:`` URIs, so
the file has no external references.

matplotlib (the ``report`` extra) is imported inside :func:`write_report`, through
the object-oriented API (``Figure``), never ``pyplot``: no global backend state is
touched in an embedding application.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..pipeline._composite import surprise_score as _surprise
from .._errors import require

__all__ = ["pick_endpoints", "render_html", "write_report"]

_FAULT_COLOR = "#d62728"
_ALERT_COLOR = "#ff7f0e"
_MARGIN_S = 40 * 60.0


def pick_endpoints(evaluation: Any, max_endpoints: int = 8) -> list[tuple[int, str]]:
    """Exactly ``max_endpoints`` (run index, endpoint id), or every endpoint when there are fewer.

    First one endpoint per fault type (first run that has one), then one without faults, then
    more endpoints with faults and more without, alternating, in run order.
    """
    n = max(int(max_endpoints), 0)
    chosen: list[tuple[int, str]] = []
    seen_types: set[str] = set()
    for k, r in enumerate(evaluation.results):
        for ev in r.run.events:
            if ev.fault_type in seen_types or (k, ev.endpoint_id) in chosen:
                continue
            # The endpoint's plot shows all of its faults: they count as seen.
            seen_types |= {e.fault_type for e in r.run.events if e.endpoint_id == ev.endpoint_id}
            chosen.append((k, ev.endpoint_id))
    chosen = chosen[:max(n - 1, 1)] if n else []
    faulty: list[tuple[int, str]] = []
    normal: list[tuple[int, str]] = []
    for k, r in enumerate(evaluation.results):
        bad = {ev.endpoint_id for ev in r.run.events}
        for e in r.run.data["endpoints"]:
            (faulty if e in bad else normal).append((k, str(e)))
    taken = set(chosen)
    normal = [x for x in normal if x not in taken]
    faulty = [x for x in faulty if x not in taken]
    if normal and len(chosen) < n:
        chosen.append(normal.pop(0))
    while len(chosen) < n and (faulty or normal):
        for pool in (faulty, normal):
            if pool and len(chosen) < n:
                chosen.append(pool.pop(0))
    return chosen


#: Detectors in an endpoint's score panel, besides the composite: more is unreadable.
MAX_DETECTORS_PLOTTED = 4
_FONT = 10


def top_detectors(names: Sequence[str], scores: np.ndarray, alerts: Sequence[Any],
                  k: int = MAX_DETECTORS_PLOTTED) -> list[int]:
    """Column indices of the ``k`` detectors that contributed most on one endpoint.

    The evidence contributions of the endpoint's alerts rank first; detectors without any rank
    by their mean score over the plotted samples (what pulled the composite up).
    """
    contrib = dict.fromkeys(names, 0.0)
    for a in alerts:
        for e in a.evidence:
            if e.detector in contrib:
                contrib[e.detector] += float(e.contribution)
    with np.errstate(invalid="ignore"):
        level = np.nan_to_num(np.nanmean(scores, axis=0), nan=0.0) if scores.size else np.zeros(len(names))
    order = sorted(range(len(names)), key=lambda j: (-contrib[names[j]], -float(level[j]), names[j]))
    return order[:k]


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _clock(t: Any) -> np.ndarray:
    """Epoch seconds → datetime64 (UTC): matplotlib puts clock time on the axis."""
    return (np.asarray(t, dtype=np.float64) * 1e3).astype("int64").astype("datetime64[ms]")


def _endpoint_figure(evaluation: Any, k: int, eid: str, open_threshold: float) -> tuple[str, str]:
    import datetime as _dt

    from matplotlib.dates import AutoDateLocator, DateFormatter
    from matplotlib.figure import Figure

    r = evaluation.results[k]
    ts, series = r.run.series(eid)
    events = [e for e in r.run.events if e.endpoint_id == eid]
    alerts = [a for a in r.alerts if a.endpoint_id == eid]
    if events:
        lo = max(float(ts[0]), min(e.start_ts for e in events) - _MARGIN_S)
        hi = min(float(ts[-1]), max(e.end_ts for e in events) + _MARGIN_S)
    else:
        lo, hi = float(ts[0]), float(ts[-1])
    sel = (ts >= lo) & (ts <= hi)
    c = r.cache
    rows = np.flatnonzero(c.endpoint_id == eid)
    st = c.ts[rows]
    ssel = (st >= lo) & (st <= hi)
    n = len(series) + 1
    fig = Figure(figsize=(12, 1.5 * n + 1.2))
    axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
    h = _clock
    for ax, (m, v) in zip(axes, series.items()):
        ax.plot(h(ts[sel]), v[sel], lw=0.9, color="#1f77b4")
        ax.set_ylabel(m, fontsize=_FONT - 1, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=_FONT - 1)
    ax = axes[-1]
    scores = _surprise(c.detector_scores[rows[ssel]])  # cached p-values -> surprise
    top = top_detectors(list(c.names), scores, alerts)
    colors = ["#2ca02c", "#9467bd", "#8c564b", "#17becf"]
    for color, j in zip(colors, top):
        ax.plot(h(st[ssel]), scores[:, j], lw=0.9, color=color, label=c.names[j])
    ax.plot(h(st[ssel]), c.composite[rows[ssel]], lw=1.6, color="black", label="composite")
    ax.axhline(open_threshold, color=_FAULT_COLOR, ls="--", lw=1.1, label=f"open threshold {open_threshold:g}")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("scores", fontsize=_FONT - 1, rotation=0, ha="right", va="center")
    ax.tick_params(labelsize=_FONT - 1)
    # Outside the data: right of the panel, one entry per line.
    ax.legend(fontsize=_FONT - 1, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0,
              frameon=False)
    day = _dt.datetime.fromtimestamp(lo, _dt.timezone.utc).strftime("%Y-%m-%d")
    ax.set_xlabel(f"time (UTC), {day}", fontsize=_FONT)
    loc = AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=_dt.timezone.utc))
    end = float(ts[-1])
    for a in axes:
        for e in events:
            a.axvspan(h(e.start_ts), h(e.end_ts), color=_FAULT_COLOR, alpha=0.15, lw=0)
            if getattr(e, "failure_ts", None) is not None:
                a.axvline(h(e.failure_ts), color="black", ls="--", lw=0.8)
        for al in alerts:
            a.axvspan(h(al.opened_ts), h(al.resolved_ts if al.resolved_ts is not None else end),
                      ymin=0.0, ymax=0.06, color=_ALERT_COLOR, alpha=0.9, lw=0)
            a.axvline(h(al.opened_ts), color=_ALERT_COLOR, lw=1.0)
    kinds = ", ".join(sorted({e.fault_type for e in events})) or "no labelled fault"
    fig.suptitle(f"{eid} ({r.run.name}): {kinds}; {len(alerts)} alert(s)", fontsize=_FONT + 1)
    fig.tight_layout(rect=(0.0, 0.0, 0.86, 1.0))  # room on the right for the legend
    caption = (f"{html.escape(eid)} in {html.escape(r.run.name)}: labelled faults shaded red "
               f"(dashed line: hard failure), alerts marked orange (line at open, bar while open); "
               f"scores: composite (black), the open threshold (dashed red) and the "
               f"{len(top)} detectors that contributed most on this endpoint")
    return _png(fig), caption


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.4f}" if abs(v) < 1 else f"{v:.1f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _tables(m: Mapping[str, Any]) -> str:
    parts = []
    if m.get("families"):
        rows = []
        for fam, r in m["families"].items():
            rows.append([fam, "all", r["events"], r["detected"], r["event_precision"], r["event_recall"],
                         r.get("chance_recall"), r["event_f1"], r["false_alerts_per_endpoint_day"],
                         r["lead_time_p50_s"], r["roc_auc"], r.get("misses") or "-"])
            rows += [["", ft + ("*" if t.get("optional") else ""), t["events"], t["detected"], t["event_precision"],
                      t["event_recall"], t.get("chance_recall"), t["event_f1"], t["false_alerts_per_endpoint_day"],
                      t["lead_time_p50_s"], t["roc_auc"], ""] for ft, t in r["per_fault_type"].items()]
        parts.append("<h2>Per scenario family and fault type</h2>")
        parts.append(_table(["family", "fault type", "events", "detected", "event precision", "event recall",
                             "chance recall", "event F1", "false alerts / endpoint-day", "lead p50 s", "ROC-AUC",
                             "targets missed"], rows, "families"))
        parts.append("<p>* optional event (planned shift): detected = alerted once and resolved; not in recall.</p>")
    parts.append("<h2>Overall, after the alert policy</h2>")
    keys = ["event_precision", "event_recall", "event_f1", "precision", "recall", "f1", "false_alarm_rate",
            "roc_auc", "pr_auc", "mttd_s", "lead_time_p50_s", "false_alerts_per_endpoint_day", "events",
            "events_detected", "alerts", "false_alerts", "samples", "endpoint_days"]
    parts.append(_table(["metric", "value"], [[k, m.get(k)] for k in keys], "overall"))
    parts.append("<h2>Targets</h2>")
    parts.append(_table(["target", "bound", "value", "met"],
                        [[t["description"], t["target"], t["value"], t["met"]] for t in m["targets"]], "targets"))
    parts.append("<h2>Per fault type</h2>")
    parts.append(_table(["fault type", "events", "detected", "event recall", "point recall", "mean TTD s",
                         "lead p50 s"],
                        [[ft, r["events"], r["detected"], r["recall"], r.get("point_recall"), r["mttd_s"],
                          r["lead_time_p50_s"]] for ft, r in m["per_fault_type"].items()], "per-fault-type"))
    if m.get("ablation"):
        parts.append(f"<h2>Ablation ({html.escape(str(m.get('ablation_mode')))})</h2>")
        rows = []
        for r in m["ablation"]:
            if r["status"] != "ok":
                rows.append([r["row"], r["status"], *(["-"] * 8)])
                continue
            rows.append([r["row"], "+".join(r["detectors"]), r.get("min_kinds"), r["event_precision"],
                         r["event_recall"], r["event_f1"], r["f1"], r["false_alarm_rate"],
                         r["false_alerts_per_endpoint_day"], r["lead_time_p50_s"]])
        parts.append(_table(["row", "detectors", "min kinds", "event precision", "event recall", "event F1",
                             "point F1", "false-alarm rate", "false alerts / endpoint-day", "lead p50 s"],
                            rows, "ablation"))
        notes = sorted({r["note"] for r in m["ablation"] if r.get("note")})
        if notes:
            parts.append("<p>" + "<br>".join(html.escape(n) for n in notes) + "</p>")
    fc = m.get("forecaster", {})
    parts.append("<h2>Forecasters</h2>")
    if fc.get("status") != "ok":
        parts.append(f"<p>{html.escape(str(fc.get('status')))}</p>")
    else:
        parts.append(_table(["metric", "MSE", "MAE", "RMSE", "R²", "naive MSE", "naive MAE", "naive RMSE",
                             "naive R²", "skill vs naive"],
                            [[k, r["model"]["mse"], r["model"]["mae"], r["model"]["rmse"], r["model"]["r2"],
                              r["naive"]["mse"], r["naive"]["mae"], r["naive"]["rmse"], r["naive"]["r2"],
                              r["skill_vs_naive"]] for k, r in fc["metrics"].items()], "forecaster"))
    if m.get("runs"):
        parts.append("<h2>Runs</h2>")
        parts.append(_table(["run", "samples", "events", "event precision", "event recall", "event F1",
                             "point F1", "false alerts / endpoint-day"],
                            [[r["run"], r["samples"], r["events"], r["event_precision"], r["event_recall"],
                              r["event_f1"], r["f1"], r["false_alerts_per_endpoint_day"]] for r in m["runs"]],
                            "runs"))
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:2px 8px;font-size:13px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
figure{margin:0 0 1.5em}figcaption{font-size:12px;color:#555}
img{max-width:100%}
"""


def render_html(metrics: Mapping[str, Any], figures: Sequence[tuple[str, str]], title: str = "OCAD quality report"
                ) -> str:
    """The HTML page: tables from ``metrics`` and ``figures`` ``[(base64 png, caption)]``."""
    src = metrics.get("source", {})
    what = (f"suite {src.get('suite')!r}, {src.get('split')} seeds {src.get('seeds')}"
            if src.get("kind") == "suite" else ", ".join(src.get("runs", [])))
    figs = "\n".join(f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(cap)}">'
                     f"<figcaption>{cap}</figcaption></figure>" for b64, cap in figures)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"<p>{html.escape(what)}; detectors: {html.escape(', '.join(metrics.get('detectors', [])))}</p>\n"
            f"{_tables(metrics)}\n<h2>Endpoints</h2>\n{figs}\n</body></html>\n")


def write_report(evaluation: Any, path: str | os.PathLike[str], *, max_endpoints: int = 8,
                 open_threshold: float | None = None) -> Path:
    """Write the HTML report of an :class:`~ocad.core.tooling._quality.Evaluation` to ``path``.

    ``max_endpoints`` endpoint figures (fewer only when the evaluation has fewer endpoints);
    ``open_threshold``: the alert policy's, drawn in every score panel (default: the
    :class:`~ocad.core.AlertPolicyConfig` default). Raises :class:`~ocad.core.OcadDependencyError`
    when matplotlib (``report`` extra) is missing.
    """
    require("matplotlib", "report", "ocad report")
    if open_threshold is None:
        from ..pipeline._alerts import AlertPolicyConfig

        open_threshold = AlertPolicyConfig().open_threshold
    figures = [_endpoint_figure(evaluation, k, eid, open_threshold)
               for k, eid in pick_endpoints(evaluation, max_endpoints)]
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_html(evaluation.metrics, figures), encoding="utf-8")
    return p
