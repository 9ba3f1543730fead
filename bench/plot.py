"""Render a benchmark result file (bench/results/*.json) as one PNG.

    bench/pgsync/.venv/bin/python bench/plot.py bench/results/<stamp>.json docs/benchmarks.png

Four panels: backfill rates against the ceiling, live latency percentiles
per offered rate, slot lag over each live phase, and backfill progress.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src: str, dst: str) -> None:
    with open(src) as f:
        r = json.load(f)
    users = r["params"]["users"]
    fig, axes = plt.subplots(2, 2, figsize=(14, 9.5))
    fig.suptitle(
        f"flusso benchmark — {users:,} users, {r['environment']['cores']} cores "
        f"({r['started'][:16].replace('T', ' ')} UTC, flusso {r['environment']['flusso_commit']})",
        fontsize=13,
    )
    backfill(axes[0][0], r)
    latency(axes[0][1], r)
    slot_lag(axes[1][0], r)
    progress(axes[1][1], r)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(dst, dpi=110)


def backfill(ax, r) -> None:
    bars = []
    if r.get("postgres_build"):
        bars.append(("Postgres build\n(pkg/sqlbuild)", r["postgres_build"]["docs_per_sec"], "#9aa5b1"))
    for c in r.get("bulk_ceiling") or []:
        kind = "overwrite" if c.get("overwrite") else ("fill, after" if c.get("after") else "fill")
        color = "#829ab1" if c.get("overwrite") else "#52606d"
        bars.append((f"raw bulk\n{kind} ×{c['concurrency']}", c["docs_per_sec"], color))
    if r.get("flusso_backfill"):
        bars.append(("flusso\n1 process", r["flusso_backfill"]["docs_per_sec"], "#2f80ed"))
    for s in r.get("flusso_distributed") or []:
        if s.get("backfill"):
            bars.append((f"flusso\n{s['assemblers']} asm", s["backfill"]["docs_per_sec"], "#56ccf2"))
    pg = r.get("pgsync") or {}
    if pg.get("backfill"):
        bars.append((f"PGSync\n{pg['version']}", pg["backfill"]["docs_per_sec"], "#eb5757"))
    labels = [b[0] for b in bars]
    vals = [b[1] for b in bars]
    ax.bar(range(len(bars)), vals, color=[b[2] for b in bars])
    ax.set_xticks(range(len(bars)), labels, fontsize=8)
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
    ceiling = max([c["docs_per_sec"] for c in r.get("bulk_ceiling") or [] if not c.get("overwrite")] or [0])
    if ceiling:
        ax.axhline(0.7 * ceiling, color="#52606d", linestyle="--", linewidth=1)
        ax.text(len(bars) - 0.5, 0.7 * ceiling, "70% of ceiling", ha="right", va="bottom", fontsize=8)
    ax.set_ylabel("documents / s")
    ax.set_title("Backfill: empty index → seeded")


def live_phases(r):
    """The live phases that ran (skipped ones have no figures)."""
    phases = [(f"flusso {p['offered_changes_per_sec']}/s", p) for p in r.get("flusso_live") or []]
    for s in r.get("flusso_distributed") or []:
        if s.get("live"):
            p = s["live"]
            phases.append((f"flusso {s['assemblers']}asm {p['offered_changes_per_sec']}/s", p))
    for p in (r.get("pgsync") or {}).get("live") or []:
        phases.append((f"PGSync {p['offered_changes_per_sec']}/s", p))
    return [(n, p) for n, p in phases if not p.get("skipped")]


def latency(ax, r) -> None:
    phases = live_phases(r)
    if not phases:
        ax.set_visible(False)
        return
    width = 0.27
    top = max([p["latency_max_ms"] for _, p in phases] + [2000]) / 1000 * 1.3
    for k, (q, color) in enumerate([("p50", "#6fcf97"), ("p95", "#f2c94c"), ("p99", "#eb5757")]):
        xs = [i + (k - 1) * width for i in range(len(phases))]
        vals = [p[f"latency_{q}_ms"] / 1000 for _, p in phases]
        # -1: the percentile fell on a probe that never became visible.
        ax.bar(xs, [v if v > 0 else top for v in vals], width, label=q, color=color,
               hatch=None, edgecolor=["black" if v < 0 else color for v in vals])
        if k == 1:
            for i, (_, p) in enumerate(phases):
                if p["latency_p99_ms"] < 0:
                    ax.text(i, top, "not visible\nin time", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(phases)), [n.replace(" ", "\n") for n, _ in phases], fontsize=8)
    ax.axhline(2, color="black", linestyle="--", linewidth=1)
    ax.text(len(phases) - 0.5, 2, "target p99 ≤ 2 s @ 2,000/s", ha="right", va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("commit → searchable (s, log)")
    ax.set_title("Live latency per offered change rate")
    ax.legend(fontsize=8)


def slot_lag(ax, r) -> None:
    for name, p in live_phases(r):
        pts = p.get("slot_lag") or []
        if pts:
            ax.plot([t for t, _ in pts], [b / 2**20 for _, b in pts], label=name)
    ax.set_xlabel("seconds into the phase")
    ax.set_ylabel("slot lag (MB of WAL)")
    ax.set_title("Replication slot lag during each live phase")
    ax.legend(fontsize=7)


def progress(ax, r) -> None:
    curves = []
    if r.get("flusso_backfill"):
        curves.append(("flusso 1 process", r["flusso_backfill"]["curve"]))
    for s in r.get("flusso_distributed") or []:
        if s.get("backfill"):
            curves.append((f"flusso {s['assemblers']} assembler(s)", s["backfill"]["curve"]))
    pg = r.get("pgsync") or {}
    if pg.get("backfill"):
        curves.append(("PGSync", pg["backfill"]["curve"]))
    for name, pts in curves:
        if pts:
            ax.plot([t for t, _ in pts], [n for _, n in pts], label=name)
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("documents indexed")
    ax.set_title("Backfill progress (OpenSearch index operations)")
    ax.legend(fontsize=8)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
