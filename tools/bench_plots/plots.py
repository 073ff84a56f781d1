"""Renders BENCHMARKS.md's plots from the benchmark scripts' JSON; never runs load itself.

    .venv/bin/python tools/bench_plots/plots.py --bench target/bench --out docs/img

(scripts/plots.sh installs matplotlib into .venv and runs this.) Every input file is checked
before anything is drawn: a missing one is named with the script that writes it, and nothing
is rendered, so the PNGs in docs/ never mix two sittings without saying so. Each figure's title
gives the machine, the date and the load average its run recorded (run.json, bench_lib.sh
run_info); the footer gives the command.

| PNG | from | written by |
| --- | --- | --- |
| bench_latency.png | open_{25,50,75,100}.json, closed.json | scripts/bench.sh |
| bench_batch_sizes.png | batch_open_*.json, batch_closed.json | scripts/bench.sh |
| bench_candidates.png | sweep/sweep.json | scripts/bench_sweep.sh |
| bench_fetch_cache.png | fetch/{memory,nocache,cache}.json, fetch/cpu_*.json | scripts/bench_fetch.sh |
| bench_split.png | split/round_*.json | scripts/bench_split.sh |

matplotlib (the house's one plotting stack: tools/soak/soak.py draws with it too) and the
standard library only.
"""

import argparse
import glob
import json
import os
import sys

LOADS = (25, 50, 75, 100)
# Sized to stay well under 150 KB per PNG in docs/.
DPI = 80


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="target/bench", help="the benchmark scripts' output directory")
    p.add_argument("--out", default="docs/img", help="where the PNGs go")
    return p.parse_args()


# === inputs ===


def inputs(bench):
    """{plot: (script, [paths])}: every file each plot reads, so all are checked before drawing."""
    split_rounds = sorted(glob.glob(os.path.join(bench, "split", "round_*.json")))
    fetch = [f"fetch/{v}.json" for v in ("memory", "nocache", "cache")]
    fetch += [f"fetch/cpu_{who}_{v}.json" for who in ("augur", "redis") for v in ("memory", "nocache", "cache")]
    need = {
        "bench_latency": ("scripts/bench.sh", ["run.json", "closed.json"] + [f"open_{p}.json" for p in LOADS]),
        "bench_batch_sizes": ("scripts/bench.sh", ["run.json", "batch_closed.json"]
                              + [f"batch_open_{p}.json" for p in LOADS]),
        "bench_candidates": ("scripts/bench_sweep.sh", ["sweep/run.json", "sweep/sweep.json"]),
        "bench_fetch_cache": ("scripts/bench_fetch.sh", ["fetch/run.json", "fetch/redis_benchmark.json"] + fetch),
        # No round at all is reported as round_1.json missing.
        "bench_split": ("scripts/bench_split.sh", ["split/run.json"]
                        + ([os.path.relpath(p, bench) for p in split_rounds] or ["split/round_1.json"])),
    }
    return {name: (script, [os.path.join(bench, p) for p in paths]) for name, (script, paths) in need.items()}


def load(path):
    with open(path) as f:
        return json.load(f)


# === decoration ===


def title(fig, what, run):
    """What the plot shows, then the machine, the date and the load average of its run."""
    day = run["started"][:10]
    span = f"{run['started'][11:16]}–{run['ended'][11:16]} UTC"
    fig.suptitle(f"{what}\n{run['cpu']}, {run['cpus']} CPUs (shared), {day} {span}, "
                 f"load average {run['load_average_start'].split()[0]} → {run['load_average_end'].split()[0]}",
                 fontsize=10)
    fig.text(0.005, 0.005, f"{run['command']} @ {run['commit']}", fontsize=7, color="grey")


def legend_below(fig, ax):
    """One legend for the figure, under the axes, so it hides no data."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(handles), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.025))


def save(fig, out, name, bottom=0.03):
    path = os.path.join(out, f"{name}.png")
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=DPI)
    print(f"plots: wrote {path} ({os.path.getsize(path) // 1024} KB)")


def thousands(ax, axis="y"):
    """Tick labels as 250k / 1.2M instead of 1e6 offsets."""
    from matplotlib.ticker import FuncFormatter

    def fmt(v, _):
        if abs(v) >= 1e6:
            return f"{v / 1e6:g}M"
        if abs(v) >= 1e3:
            return f"{v / 1e3:g}k"
        return f"{v:g}"

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(FuncFormatter(fmt))


def log_ms(ax):
    """A log-scale millisecond axis labelled 0.5, 1, 2, 5, 10 rather than 5x10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


# === the plots ===


def latency(plt, bench, out):
    """(1) Open-loop latency against throughput, client side and the server's own stages."""
    run, closed = load(f"{bench}/run.json"), load(f"{bench}/closed.json")
    steps = [(p, load(f"{bench}/open_{p}.json")) for p in LOADS]
    x = [r["items_per_s"] for _, r in steps]
    fig, (client, server) = plt.subplots(1, 2, figsize=(11, 4.6))
    for key, style in (("p50", "o-"), ("p99", "s-"), ("p999", "^--")):
        client.plot(x, [r["latency_ms"][key] for _, r in steps], style, label=key.replace("p999", "p99.9"))
    for (p, r), xi in zip(steps, x):
        client.annotate(f"{p}%", (xi, r["latency_ms"]["p99"]), textcoords="offset points", xytext=(4, 6), fontsize=8)
    log_ms(client)
    client.set_title("client side (augur bench, open loop, from the scheduled send)", fontsize=9)
    client.set_ylabel("latency (ms, log scale)")
    stages = ("queue", "infer", "fetch", "assemble", "total")
    for stage in stages:
        ys = []
        for _, r in steps:
            found = [s["p99"] for s in r["server_stages"] if s["stage"] == stage]
            ys.append(found[0] if found else float("nan"))
        server.plot(x, ys, "o-", label=f"{stage} p99", lw=2.2 if stage == "total" else 1.2)
    log_ms(server)
    server.set_title("server side p99 per stage (ModelAdmin.GetStats, same windows)", fontsize=9)
    server.set_ylabel("p99 (ms, log scale)")
    for ax in (client, server):
        ax.axvline(closed["items_per_s"], color="grey", ls=":", lw=1)
        ax.text(closed["items_per_s"], ax.get_ylim()[0], " closed-loop max", rotation=90, va="bottom",
                ha="right", fontsize=8, color="grey")
        ax.set_xlabel("throughput (items/s scored; 100 candidates per request)")
        thousands(ax, "x")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    title(fig, "augur latency vs throughput: open loop at 25/50/75/100% of the closed-loop max "
               "(bench scene, in-memory store)", run)
    save(fig, out, "bench_latency")
    plt.close(fig)


def batch_sizes(plt, bench, out):
    """(2) Rows per model run under each load (augur_batch_size_rows over each step's window)."""
    run = load(f"{bench}/run.json")
    levels = [(f"{p}% load", load(f"{bench}/batch_open_{p}.json"), load(f"{bench}/open_{p}.json")) for p in LOADS]
    levels.append(("closed loop c=32", load(f"{bench}/batch_closed.json"), load(f"{bench}/closed.json")))
    model = "bench"
    for name, b, _ in levels:
        if model not in b["models"]:
            sys.exit(f"plots: no model runs of {model!r} in the batch histogram of {name} (was augur serving "
                     "config/bench.toml?)")
    les = levels[0][1]["models"][model]["le"]
    # Per-bucket counts from the cumulative histogram; the bucket (previous le, le].
    shares = []
    for _, b, _ in levels:
        m = b["models"][model]
        cum = m["cumulative_runs"]
        counts = [c - (cum[i - 1] if i else 0) for i, c in enumerate(cum)]
        shares.append([100 * c / m["runs"] for c in counts])
    used = [i for i in range(len(les)) if any(s[i] > 0.05 for s in shares)]
    bounds = ["0"] + les

    def label(i):
        lo, hi = bounds[i], les[i]
        lo = int(float(lo)) + 1
        return "> " + str(int(float(bounds[i]))) if hi == "+Inf" else (f"{lo}" if lo == int(float(hi)) else f"{lo}–{int(float(hi))}")

    fig, ax = plt.subplots(figsize=(10, 4.6))
    width = 0.8 / len(levels)
    for k, ((name, b, r), s) in enumerate(zip(levels, shares)):
        m = b["models"][model]
        xs = [j + (k - (len(levels) - 1) / 2) * width for j in range(len(used))]
        ax.bar(xs, [s[i] for i in used], width,
               label=f"{name}: {r['requests_per_s']:,.0f} req/s, {m['runs']:,.0f} runs, mean {m['rows_per_run']:.0f} rows")
    ax.set_xticks(range(len(used)), [label(i) for i in used])
    ax.set_xlabel("rows per model run (histogram bucket of augur_batch_size_rows; max_batch_rows = 256)")
    ax.set_ylabel("share of model runs (%)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    title(fig, "augur batch sizes under load: 100-candidate requests, bench scene (scripts/bench.sh steps 2 and 5)", run)
    save(fig, out, "bench_batch_sizes")
    plt.close(fig)


def candidates(plt, bench, out):
    """(3) augur vs raw ORT items/s and items per CPU-second by candidates per request."""
    run, sweep = load(f"{bench}/sweep/run.json"), load(f"{bench}/sweep/sweep.json")
    rows = sweep["rows"]
    n = [r["candidates"] for r in rows]
    fig, (tput, per_cpu) = plt.subplots(1, 2, figsize=(11, 4.6))
    series = (
        (tput, "augur_items_per_s", "raw_items_per_s", "items_per_s", "items/s"),
        (per_cpu, "augur_items_per_cpu_s", "raw_items_per_cpu_s", "items_per_cpu_s", "items per CPU-second"),
    )
    for ax, augur_key, raw_key, ceiling_key, unit in series:
        augur = [r[augur_key] for r in rows]
        ax.plot(n, augur, "o-", label="augur (h2load -c 4 -m 8, one request of N candidates)")
        ax.plot(n, [r[raw_key] for r in rows], "s--", label="raw ORT at batch N (a request scored alone)")
        ax.axhline(sweep["raw_batch_256"][ceiling_key], color="grey", ls=":", label="raw ORT at batch 256 (the ceiling)")
        for xi, a, r in zip(n, augur, rows):
            ax.annotate(f"{a / r[raw_key]:.2f}x", (xi, a), textcoords="offset points", xytext=(0, 7), ha="center",
                        fontsize=8)
        ax.set_xscale("log")
        ax.set_xticks(n, [str(v) for v in n])
        ax.minorticks_off()
        ax.set_xlabel("candidates per request (N)")
        ax.set_ylabel(unit)
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
        thousands(ax)
        ax.grid(alpha=0.3)
        ax.set_title(f"{unit} (labels: augur / raw ORT at batch N)", fontsize=9)
    legend_below(fig, tput)
    title(fig, "augur vs raw ONNX Runtime by candidates per request (bench model, 2 threads x 1 intra-op)", run)
    save(fig, out, "bench_candidates", bottom=0.08)
    plt.close(fig)


def fetch_cache(plt, bench, out):
    """(4) The ranking scene from Redis without and with the item cache, and from memory."""
    d = f"{bench}/fetch"
    run, ceiling = load(f"{d}/run.json"), load(f"{d}/redis_benchmark.json")
    variants = (("memory", "in memory"), ("nocache", "Redis, no cache"), ("cache", "Redis + item cache"))
    reports = {v: load(f"{d}/{v}.json") for v, _ in variants}
    fig, (tput, lat) = plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [1, 1.5]})
    names = [name for _, name in variants]
    items = [reports[v]["items_per_s"] for v, _ in variants]
    bars = tput.bar(names, items, color=["tab:grey", "tab:red", "tab:green"])
    for bar, (v, _) in zip(bars, variants):
        augur_cores = load(f"{d}/cpu_augur_{v}.json")["cores"]
        redis_cores = load(f"{d}/cpu_redis_{v}.json")["cores"]
        note = f"augur {augur_cores:.2f} cores" + (f"\nRedis {redis_cores:.2f}" if v != "memory" else "")
        hit = reports[v].get("cache_hit_ratio")
        if hit is not None:
            note += f"\nhit ratio {hit:.3f}"
        tput.annotate(note, (bar.get_x() + bar.get_width() / 2, bar.get_height()), textcoords="offset points",
                      xytext=(0, 3), ha="center", fontsize=7)
    tput.set_ylabel("items/s (100 candidates per request)")
    tput.set_ylim(top=max(items) * 1.3)
    thousands(tput)
    tput.set_title(f"throughput (redis-benchmark HMGET, pipelined: {ceiling['requests_per_s']:,.0f}/s)", fontsize=9)
    tput.tick_params(axis="x", labelsize=8)
    stages = ("fetch", "assemble", "queue", "infer", "total")
    width = 0.8 / len(variants)
    for k, (v, name) in enumerate(variants):
        by = {s["stage"]: s for s in reports[v]["server_stages"]}
        for key, alpha, suffix in (("p99", 0.35, "p99"), ("p50", 1.0, "p50")):
            xs = [j + (k - 1) * width for j in range(len(stages))]
            lat.bar(xs, [by[s][key] if s in by else 0 for s in stages], width, alpha=alpha,
                    color=bars[k].get_facecolor(), label=f"{name} {suffix}")
    lat.set_xticks(range(len(stages)), stages)
    log_ms(lat)
    lat.set_ylim(top=lat.get_ylim()[1] * 4)
    lat.set_ylabel("server stage latency (ms, log scale)")
    lat.set_title("server stages, p50 (solid) and p99 (light), ModelAdmin.GetStats", fontsize=9)
    lat.legend(fontsize=7, ncol=3)
    for ax in (tput, lat):
        ax.grid(alpha=0.3, axis="y", which="both")
    title(fig, "Fetch with and without the local item cache: ranking scene, closed loop c=16, Zipf 1.1 over 5000 items",
          run)
    save(fig, out, "bench_fetch_cache")
    plt.close(fig)


def split(plt, bench, out):
    """(5) Flat vs split graph vs raw ORT on the flat graph, per round."""
    d = f"{bench}/split"
    run = load(f"{d}/run.json")
    rounds = sorted((load(p) for p in glob.glob(f"{d}/round_*.json")), key=lambda r: r["round"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    series = (
        ("raw ORT, flat graph (batch 256, 2 x 1 thread)", "tab:grey",
         lambda r: (r["raw_items_per_s"], r["raw_items_per_cpu_s"])),
        ("augur, flat graph (scene bench)", "tab:blue",
         lambda r: (r["bench"]["items_per_s"], r["bench"]["items_per_cpu_s"])),
        ("augur, split graph (scene bench_split)", "tab:orange",
         lambda r: (r["bench_split"]["items_per_s"], r["bench_split"]["items_per_cpu_s"])),
    )
    width = 0.8 / len(series)
    for idx, (ax, unit) in enumerate(zip(axes, ("items/s", "items per CPU-second"))):
        for k, (name, color, pick) in enumerate(series):
            xs = [j + (k - 1) * width for j in range(len(rounds))]
            ys = [pick(r)[idx] for r in rounds]
            bars = ax.bar(xs, ys, width, color=color, label=name)
            if k and idx == 1:
                for bar, r, y in zip(bars, rounds, ys):
                    ax.annotate(f"{y / r['raw_items_per_cpu_s']:.2f}x", (bar.get_x() + width / 2, y),
                                textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        ax.set_xticks(range(len(rounds)), [f"round {r['round']}" for r in rounds])
        ax.set_ylabel(unit)
        thousands(ax)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_title("items/s (augur: h2load -c 4 -m 8, 100 candidates per request)", fontsize=9)
    axes[1].set_title("items per CPU-second (labels: x raw ORT's, same round)", fontsize=9)
    axes[1].set_ylim(top=axes[1].get_ylim()[1] * 1.1)
    legend_below(fig, axes[0])
    title(fig, "Flat vs split graph vs raw ORT (bench model and its split twin, same weights), rounds alternate", run)
    save(fig, out, "bench_split", bottom=0.08)
    plt.close(fig)


PLOTS = {
    "bench_latency": latency,
    "bench_batch_sizes": batch_sizes,
    "bench_candidates": candidates,
    "bench_fetch_cache": fetch_cache,
    "bench_split": split,
}


def main():
    args = parse_args()
    missing = [(path, script) for script, paths in inputs(args.bench).values() for path in paths
               if not os.path.isfile(path)]
    if missing:
        for path, script in dict.fromkeys(missing):
            print(f"plots: missing {path} (written by {script})", file=sys.stderr)
        sys.exit(1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(args.out, exist_ok=True)
    for name, draw in PLOTS.items():
        draw(plt, args.bench, args.out)


if __name__ == "__main__":
    main()
