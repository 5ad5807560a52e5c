"""Charts of a run, rendered with matplotlib (Agg) and embedded as PNG data URIs, so the
report is one self-contained file that fetches nothing.

A chart with nothing to show (every value zero, no samples) is not drawn: its function returns
None and the report says so in one line. Time charts take ``markers`` (seconds from the start,
label): the fault's steps and the end of the load, drawn as labelled vertical lines; limits are
drawn as bands above them."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rabbitscale.core import latency  # noqa: E402

WIDTH, HEIGHT = 9.0, 3.4
SIDE_QUEUES = ("_error", "_skipped")


def _legend(ax: Any, loc: str = "upper right") -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc=loc)


def _uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


Markers = list[tuple[float, str]]


def _markers(ax: Any, markers: Markers | None) -> None:
    for t, label in markers or []:
        ax.axvline(t, color="dimgray", linestyle=":", linewidth=1)
        ax.text(t, 1.0, label, rotation=90, fontsize=6, va="top", ha="right", color="dimgray",
                transform=ax.get_xaxis_transform())


def _all_zero(values: Any) -> bool:
    try:
        return len(values) == 0 or not bool((values.fillna(0) != 0).any())
    except AttributeError:
        return not any(values)


def throughput(tp: Any, t0: float, markers: Markers | None = None) -> str | None:
    if "completed" not in tp or _all_zero(tp["completed"]):
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    for queue, g in tp.groupby("queue"):
        g = g.sort_values("t")
        ax.plot(g["t"] - t0, g["completed"], label=queue, linewidth=1)
    ax.set(title="Completed per second", xlabel="seconds", ylabel="messages/s")
    _markers(ax, markers)
    _legend(ax)
    ax.grid(alpha=0.3)
    return _uri(fig)


def consumed(queues: Any, t0: float, markers: Markers | None = None) -> str | None:
    """Messages consumed per second per main queue, from the broker's ack counter: the
    differences between its refreshes (a black-box run has no completion records)."""
    if "acked_total" not in queues or not len(queues):
        return None
    main = queues[~queues["queue"].str.endswith(SIDE_QUEUES) & queues["acked_total"].notna()]
    if not len(main):
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    drawn = False
    for queue, g in main.groupby("queue"):
        g = g.sort_values("t")
        moved = g[g["acked_total"].diff().fillna(1) != 0]  # the refreshes
        rate = moved["acked_total"].diff() / moved["t"].diff()
        if rate.notna().any() and not _all_zero(rate.fillna(0)):
            ax.step(moved["t"] - t0, rate, where="pre", label=queue, linewidth=1)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(title="Consumed per second (the broker's counters)", xlabel="seconds",
           ylabel="messages/s")
    _markers(ax, markers)
    _legend(ax)
    ax.grid(alpha=0.3)
    return _uri(fig)


def depth(queues: Any, t0: float, warning: int, critical: int,
          markers: Markers | None = None) -> str | None:
    main = queues[~queues["queue"].str.endswith(SIDE_QUEUES)] if len(queues) else queues
    if not len(main) or (_all_zero(main["messages"]) and
                         ("ready_now" not in main or _all_zero(main["ready_now"]))):
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    col = "ready_now" if "ready_now" in main and main["ready_now"].notna().any() else "messages"
    for queue, g in main.groupby("queue"):
        ax.plot(g["t"] - t0, g[col].fillna(g["messages"]), label=queue, linewidth=1)
    top = max(float(main[col].fillna(0).max() or 0), 1.0)
    ymax = max(top * 1.2, 10)
    ax.axhspan(warning, max(critical, ymax), color="orange", alpha=0.08,
               label=f"warning > {warning}")
    ax.axhspan(critical, max(critical, ymax) * 2, color="red", alpha=0.08,
               label=f"critical > {critical}")
    ax.set_ylim(0, ymax)
    ax.set(title="Queue depth (ready)", xlabel="seconds", ylabel="messages")
    _markers(ax, markers)
    _legend(ax)
    ax.grid(alpha=0.3)
    return _uri(fig)


def message_age(queues: Any, t0: float, limit_s: float,
                markers: Markers | None = None) -> str | None:
    main = queues[~queues["queue"].str.endswith(SIDE_QUEUES)] if len(queues) else queues
    if not len(main) or "oldest_age_s" not in main or _all_zero(main["oldest_age_s"]):
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    for queue, g in main.groupby("queue"):
        ax.plot(g["t"] - t0, g["oldest_age_s"], label=queue, linewidth=1)
    ymax = max(float(main["oldest_age_s"].max() or 0) * 1.2, 1.0)
    ax.axhspan(limit_s, max(limit_s, ymax) * 2, color="red", alpha=0.08,
               label=f"over the limit {limit_s:g}s")
    ax.set(title="Oldest message age (consumer lag)", xlabel="seconds", ylabel="seconds")
    ax.set_ylim(0, ymax)
    _markers(ax, markers)
    _legend(ax)
    ax.grid(alpha=0.3)
    return _uri(fig)


def memory(node: Any, t0: float, fraction: float,
           markers: Markers | None = None) -> str | None:
    if not len(node) or "mem_used" not in node or _all_zero(node["mem_used"]):
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    mib = 2**20
    groups = node.groupby("node") if "node" in node else [("node", node)]
    for i, (name, g) in enumerate(groups):
        suffix = f" {name}" if "node" in node and node["node"].nunique() > 1 else ""
        ax.plot(g["t"] - t0, g["mem_used"] / mib, label=f"mem_used{suffix}", linewidth=1.2)
        ax.plot(g["t"] - t0, g["mem_limit"] / mib, color="red", linestyle="--", linewidth=1,
                label="high watermark" if i == 0 else None)
        ax.plot(g["t"] - t0, g["mem_limit"] * fraction / mib, color="orange",
                linestyle="--", linewidth=1, label=f"{fraction:.0%} of watermark"
                if i == 0 else None)
    alarms = node[node["mem_alarm"].fillna(False).astype(bool)]
    if len(alarms):
        ax.scatter(alarms["t"] - t0, alarms["mem_used"] / mib, color="red", s=8, label="alarm")
    ax.set(title="Broker node memory", xlabel="seconds", ylabel="MiB")
    _markers(ax, markers)
    _legend(ax)
    ax.grid(alpha=0.3)
    return _uri(fig)


def _phases(ax: Any, phases: dict[str, float], t0: float) -> None:
    for name in ("fill_end", "drain_start", "drain_end"):
        if name in phases:
            ax.axvline(phases[name] - t0, color="gray", linestyle=":", linewidth=1)
            ax.text(phases[name] - t0, 1.0, name.replace("_", " "), rotation=90, fontsize=6,
                    va="top", ha="right", color="gray", transform=ax.get_xaxis_transform())


def backlog_memory(node: Any, t0: float, backlog: dict[str, Any], fraction: float) -> str:
    """Node memory (rss, mem_used, bodies held as binary) through fill, hold and drain,
    against the model's peak (baseline + predicted growth) and the alert level."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    mib = 2**20
    predicted = float(backlog["model"]["memory_growth_bytes"])
    for i, (name, g) in enumerate(node.groupby("node")):
        x = g["t"] - t0
        for col, style in (("rss", "-"), ("mem_used", "--"), ("binary", ":")):
            if col in g and g[col].notna().any():
                ax.plot(x, g[col] / mib, linestyle=style, linewidth=1.1, label=f"{col} {name}")
        base = backlog.get("nodes", {}).get(name, {}).get("baseline_memory_bytes")
        if base is not None:
            ax.axhline((base + predicted) / mib, color="purple", linestyle="-.", linewidth=1,
                       label="model: baseline + predicted peak growth" if i == 0 else None)
        if "mem_limit" in g and g["mem_limit"].notna().any() and i == 0:
            alert = float(g["mem_limit"].max()) * fraction / mib
            ax.axhline(alert, color="orange", linestyle="--", linewidth=1,
                       label=f"{fraction:.0%} of watermark ({alert:,.0f} MiB)")
    _phases(ax, backlog.get("phases", {}), t0)
    top = max([float(node[c].max() or 0) for c in ("rss", "mem_used") if c in node] + [1.0])
    ax.set_ylim(0, max(top, float(node["mem_used"].min() or 0) + predicted) / mib * 1.25)
    ax.set(title="Broker memory with a backlog, against the model", xlabel="seconds",
           ylabel="MiB")
    _legend(ax, "upper left")
    ax.grid(alpha=0.3)
    return _uri(fig)


def backlog_disk(node: Any, t0: float, backlog: dict[str, Any]) -> str:
    """The data directory's growth (or the drop of disk free where it cannot be read)
    against the model's disk figure."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    mib = 2**20
    predicted = float(backlog["model"]["disk_bytes"])
    for name, g in node.groupby("node"):
        if "data_dir_bytes" in g and g["data_dir_bytes"].notna().all():
            base = float(g[g["t"] < backlog["phases"].get("fill_start", 0)]["data_dir_bytes"]
                         .iloc[-1:].sum() or g["data_dir_bytes"].iloc[0])
            ax.plot(g["t"] - t0, (g["data_dir_bytes"] - base) / mib, linewidth=1.2,
                    label=f"data directory growth {name}")
        elif "disk_free" in g and g["disk_free"].notna().any():
            ax.plot(g["t"] - t0, (g["disk_free"].iloc[0] - g["disk_free"]) / mib,
                    linewidth=1.2, label=f"disk free drop {name}")
    ax.axhline(predicted / mib, color="purple", linestyle="-.", linewidth=1,
               label=f"model peak (a WAL being flushed): {predicted / mib:,.0f} MiB")
    stored = backlog["model"].get("stored_bytes")
    if stored:
        ax.axhline(float(stored) / mib, color="purple", linestyle=":", linewidth=1,
                   label=f"model once written: {float(stored) / mib:,.0f} MiB")
    _phases(ax, backlog.get("phases", {}), t0)
    ax.set(title="Broker disk with a backlog, against the model", xlabel="seconds",
           ylabel="MiB")
    _legend(ax, "upper left")
    ax.grid(alpha=0.3)
    return _uri(fig)


def processes(procs: Any, t0: float) -> str | None:
    """Resident memory of each process of the run (soak: a rising line is a leak)."""
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    mib = 2**20
    for name, g in procs.groupby("process"):
        style = ":" if str(name).startswith("broker ") else "-"
        ax.plot(g["t"] - t0, g["rss_bytes"] / mib, linestyle=style, linewidth=1.1, label=name)
    ax.set(title="Process memory (rss)", xlabel="seconds", ylabel="MiB")
    _legend(ax, "upper left")
    ax.grid(alpha=0.3)
    return _uri(fig)


def consumers(queues: Any, t0: float, markers: Markers | None = None) -> str | None:
    main = queues[~queues["queue"].str.endswith(SIDE_QUEUES)] if len(queues) else queues
    if not len(main) or "consumers" not in main or _all_zero(main["consumers"]):
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    for queue, g in main.groupby("queue"):
        ax.step(g["t"] - t0, g["consumers"], where="post", label=queue, linewidth=1)
    ax.set(title="Consumers per queue", xlabel="seconds", ylabel="consumers")
    _markers(ax, markers)
    _legend(ax)
    ax.grid(alpha=0.3)
    return _uri(fig)


def percentile_curves(series: dict[str, Any], title: str) -> str | None:
    """HDR percentile distribution on a log scale of 1/(1-p), the HdrHistogram plot."""
    if not any(h.get_total_count() for h in series.values()):
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT))
    ticks = [50, 90, 99, 99.9, 99.99]
    for label, h in series.items():
        if not h.get_total_count():
            continue
        xs, ys = [], []
        for item in h.get_percentile_iterator(5):
            pct = min(item.percentile_level_iterated_to, 99.999)
            xs.append(1 / (1 - pct / 100))
            ys.append(item.value_iterated_to / 1000)
        ax.plot(xs, ys, label=label, linewidth=1.2)
    ax.set_xscale("log")
    ax.set_xticks([1 / (1 - t / 100) for t in ticks])
    ax.set_xticklabels([f"{t:g}%" for t in ticks])
    ax.set(title=title, xlabel="percentile", ylabel="ms")
    _legend(ax, "upper left")
    ax.grid(alpha=0.3)
    return _uri(fig)


def decode_all(encoded: dict[str, str]) -> dict[str, Any]:
    return {name: latency.decode(text) for name, text in encoded.items()}


def latency_curve(doc: dict[str, Any]) -> str | None:
    """A sweep's p50/p99 queue wait and e2e p99 against the arrival rate: measured points,
    the model's lines, the knee, the SLO threshold."""
    points = doc.get("points") or []
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH, HEIGHT * 1.3))
    rates = [p["rate_per_s"] for p in points]
    for key, label, color in (("queue_wait_p50_ms", "queue wait p50", "tab:blue"),
                              ("queue_wait_p99_ms", "queue wait p99", "tab:red"),
                              ("e2e_p99_ms", "e2e p99", "tab:gray")):
        measured = [p["measured"].get(key) for p in points]
        predicted = [p["predicted"].get(key) for p in points]
        ax.plot([r for r, v in zip(rates, measured, strict=True) if v is not None],
                [v for v in measured if v is not None], "o", color=color,
                label=f"{label} measured")
        ax.plot([r for r, v in zip(rates, predicted, strict=True) if v is not None],
                [v for v in predicted if v is not None], "-", color=color, alpha=0.7,
                label=f"{label} model")
    knee = (doc.get("knee_per_s") or {}).get("predicted")
    if knee:
        ax.axvline(knee, color="dimgray", linestyle=":", linewidth=1)
        ax.text(knee, 1.0, "knee (model)", rotation=90, fontsize=7, va="top", ha="right",
                transform=ax.get_xaxis_transform())
    slo = doc.get("slo")
    if slo:
        limit = float(slo["threshold"].split("<")[1].removesuffix("ms"))
        ax.axhline(limit, color="tab:orange", linestyle="--", linewidth=1,
                   label=f"SLO {slo['threshold']}")
    ax.set_xlabel("arrival rate (msg/s)")
    ax.set_ylabel("ms")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.grid(alpha=0.3)
    _legend(ax, "upper left")
    return _uri(fig)
