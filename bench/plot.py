"""The report's figure: stacked step time per example (cache wait and compute) for full and
recycled at each K, and the speedup against K."""
from __future__ import annotations


def draw(report: dict, path) -> None:
    """Write a two-panel PNG to `path` from a bench.report dict."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    ks = sorted(int(k) for k in report["steps"])
    modes = {"full": "F", "frozen": "Z", "recycled": "R"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
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
        speedups = [report["steps"][str(k)]["full"][phase]["per_example"]["total"]
                    / report["steps"][str(k)]["recycled"][phase]["per_example"]["total"]
                    for k in ks]
        right.plot(ks, speedups, style, label=f"{phase}: full / recycled")
    right.axhline(1.0, color="grey", lw=0.8)
    right.set_xticks(ks)
    right.set_xlabel(f"K (layers cached, of {report['num_layers']})")
    right.set_ylabel("speedup")
    right.set_title("Speedup against K")
    right.legend(fontsize=8)
    fig.suptitle(f"{report['model']} on BBC News, {report['device']}, {report['date']}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
