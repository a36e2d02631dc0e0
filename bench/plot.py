"""The report's figure: stacked step time per example (cache wait and compute) for full and
recycled at each K, the speedup against K, and (when the report has it) the wall time of
training T task models over one corpus, full against recycled with the build paid once."""
from __future__ import annotations

from bench.table import speedups_by_layer


def draw(report: dict, path) -> None:
    """Write a two-panel PNG to `path` from a bench.report dict."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    ks = sorted(int(k) for k in report["steps"])
    modes = {"full": "F", "frozen": "Z", "recycled": "R"}
    many = report.get("many_models_details")
    fig, axes = plt.subplots(1, 3 if many else 2, figsize=(16 if many else 11, 4.2))
    left, right = axes[0], axes[1]
    width = 0.26
    colors = {"wait": "#d62728", "h2d": "#9467bd", "forward": "#1f77b4", "backward": "#ff7f0e",
              "optimizer": "#2ca02c"}
    for m, mode in enumerate(modes):
        for i, k in enumerate(ks):
            pe = report["steps"][str(k)][mode]["train"]["per_example"]
            bottom = 0.0
            for phase, color in colors.items():
                ms = pe[phase] * 1e3
                left.bar(i + (m - 1) * width, ms, width, bottom=bottom, color=color,
                         label=phase if (m, i) == (0, 0) else None)
                bottom += ms
            left.text(i + (m - 1) * width, bottom, modes[mode], ha="center", va="bottom",
                      fontsize=8)
    left.set_xticks(range(len(ks)), [f"K={k}" for k in ks])
    left.set_ylabel("training ms per example")
    left.set_title("Training step per example (F full, Z frozen, R recycled)")
    left.legend(fontsize=8)
    for phase, style in (("train", "o-"), ("infer", "s--")):
        speedups = speedups_by_layer(report["steps"], phase)
        right.plot(ks, [speedups[k] for k in ks], style, label=f"{phase}: full / recycled")
    right.axhline(1.0, color="grey", lw=0.8)
    right.set_xticks(ks)
    right.set_xlabel(f"K (layers cached, of {report['num_layers']})")
    right.set_ylabel("speedup")
    right.set_title("Speedup against K")
    right.legend(fontsize=8)
    if many:
        _draw_many_models(axes[2], report)
    fig.suptitle(f"{report['model']} on BBC News, {report['device']}, {report['date']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _draw_many_models(ax, report: dict) -> None:
    """Hours to train T task models: full grows with T, recycled starts at the build."""
    d = report["many_models_details"]
    counts = list(range(1, 21))
    per_task = {m: d["epochs_per_task"] * d["epoch_seconds"][m] / 3600 for m in ("full", "recycled")}
    build = d["build_seconds"] / 3600
    ax.plot(counts, [t * per_task["full"] for t in counts], "o-", ms=3, label="full")
    ax.plot(counts, [build + t * per_task["recycled"] for t in counts], "s-", ms=3,
            label="recycled (build once)")
    for t, speedup in report["many_models"].items():
        ax.annotate(f"{speedup:.2f}x", (int(t), int(t) * per_task["full"]), fontsize=8,
                    textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xlabel(f"task models T ({d['epochs_per_task']} epochs each, whole BBC train split)")
    ax.set_ylabel("training wall time, hours")
    ax.set_title("T task models over one corpus")
    ax.margins(x=0.06, y=0.12)  # room for the last point's label
    ax.legend(fontsize=8)
