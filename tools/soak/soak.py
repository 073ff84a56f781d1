"""The soak's driver (scripts/soak.sh starts Redis and augur, then this): for the whole duration it
keeps `augur simulate` (Predict + ReportEvents) running, publishes a new model version every
`--reload-every` seconds, restarts Redis once in the middle, and every `--interval` seconds samples
augur's RSS, open fds and threads from /proc and the Predict p99, requests/s and errors of the last
window from the deltas of `/metrics`. Writes soak.csv, events.json and soak.png into --out, prints
the summary and exits 1 if RSS grew more than --max-growth-mib after warm-up.

Stdlib only, except matplotlib for the plot (soak.sh installs it into .venv).
"""

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

PREDICT = "/augur.v1.Prediction/Predict"
REPORT = "/augur.v1.Prediction/ReportEvents"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--augur", required=True, help="the augur binary")
    p.add_argument("--pid", type=int, required=True, help="augur serve's pid")
    p.add_argument("--addr", required=True, help="augur's public gRPC address")
    p.add_argument("--metrics", required=True, help="admin HTTP /metrics URL")
    p.add_argument("--config", required=True, help="augur's config (for `models publish`)")
    p.add_argument("--model-dir", required=True, help="the ranking scene's repository directory")
    p.add_argument("--model-file", required=True, help="the ONNX model published as each new version")
    p.add_argument("--redis-cmd", required=True, help="shell command that starts Redis in the foreground")
    p.add_argument("--redis-pid", type=int, required=True)
    p.add_argument("--redis-pid-file", required=True, help="where the current Redis pid is kept for cleanup")
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--reload-every", type=float, required=True, help="seconds between published versions")
    p.add_argument("--warmup", type=float, required=True, help="seconds; RSS growth is counted from here")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--max-growth-mib", type=float, default=50.0)
    p.add_argument("--out", required=True)
    return p.parse_args()


# === /proc and /metrics ===


def proc_sample(pid):
    status = open(f"/proc/{pid}/status").read()
    field = lambda k: int(re.search(rf"^{k}:\s+(\d+)", status, re.M).group(1))
    return {"rss_mib": field("VmRSS") / 1024, "threads": field("Threads"), "fds": len(os.listdir(f"/proc/{pid}/fd"))}


LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})? (\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    """Predict's cumulative histogram buckets {le: count}, calls by (method, code), the ranking version."""
    req = urllib.request.Request(url, headers={"Accept": "text/plain"})
    text = urllib.request.urlopen(req, timeout=5).read().decode()
    buckets, codes, version = {}, {}, None
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))
        if name == "augur_rpc_duration_seconds_bucket" and labels.get("method") == PREDICT:
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + value
        elif name == "augur_rpc_requests_total" and labels.get("method") in (PREDICT, REPORT):
            key = (labels["method"], labels.get("code", "?"))
            codes[key] = codes.get(key, 0.0) + value
        elif name == "augur_model_version_info" and labels.get("model") == "ranking" and value == 1:
            v = int(labels.get("version", "0"))
            version = v if version is None else max(version, v)
    return buckets, codes, version


def quantile(q, before, after):
    """histogram_quantile over the window's bucket deltas (linear within a bucket), in ms."""
    les = sorted(after)
    delta = [(le, after[le] - before.get(le, 0.0)) for le in les]
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return None
    rank, prev_le, prev_n = q * total, 0.0, 0.0
    for le, n in delta:
        if n >= rank:
            if le == float("inf"):
                return prev_le * 1000
            return (prev_le + (le - prev_le) * (rank - prev_n) / max(n - prev_n, 1e-9)) * 1000
        prev_le, prev_n = le, n
    return prev_le * 1000


# === the load, reloads and the Redis restart ===


class Load:
    """`augur simulate` back to back (nice 10), each run at most 60 s; each run's JSON report is
    kept. A run with failed calls exits non-zero: it is counted, never fatal."""

    def __init__(self, args):
        self.args, self.proc, self.seed, self.reports, self.runs_failed = args, None, 0, [], 0

    def poll(self, remaining, stopping=False):
        if self.proc is not None and self.proc.poll() is not None:
            out, err = self.proc.communicate()
            try:
                self.reports.append(json.loads(out.strip().splitlines()[-1]))
            except (ValueError, IndexError):
                print(f"soak: simulate run {self.seed} printed no report: {err.strip()[-300:]}", file=sys.stderr)
            if self.proc.returncode != 0:
                self.runs_failed += 1
            self.proc = None
        if self.proc is None and not stopping:
            self.seed += 1
            self.proc = subprocess.Popen(
                ["nice", "-n", "10", self.args.augur, "simulate", "--addr", self.args.addr,
                 "--concurrency", str(self.args.concurrency), "--requests", "1000000",
                 "--max-seconds", f"{min(60.0, remaining):.1f}", "--report-delay-ms", "200", "--seed", str(self.seed), "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self):
        """The last run was given the time that remained: wait for its report."""
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.poll(0, stopping=True)


def publish(args):
    r = subprocess.run([args.augur, "models", "publish", "--config", args.config, "--scene", "ranking",
                        "--model", args.model_file, "--to", args.model_dir], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"soak: publish failed: {r.stderr.strip()}", file=sys.stderr)
    return r.returncode == 0


def restart_redis(args, pid):
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    time.sleep(5)
    new = subprocess.Popen(["bash", "-c", "exec " + args.redis_cmd], stdout=subprocess.DEVNULL)
    open(args.redis_pid_file, "w").write(str(new.pid))
    return new.pid


# === main loop ===


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    duration = args.minutes * 60
    t0 = time.time()
    reload_at = [t for t in frange(args.reload_every, duration - 30, args.reload_every)]
    redis_at = duration / 2
    redis_pid, events, rows = args.redis_pid, [], []
    load = Load(args)
    prev_t, (prev_b, prev_c, _) = time.time(), scrape(args.metrics)
    first_c = prev_c
    next_sample = args.interval
    load.poll(duration)
    csv_path = os.path.join(args.out, "soak.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "rss_mib", "fds", "threads", "p50_ms", "p99_ms", "rps", "errors", "model_version",
                    "report_rps", "report_errors"])
        while True:
            now = time.time() - t0
            if now >= duration:
                break
            if duration - now > 2:
                load.poll(duration - now)
            if reload_at and now >= reload_at[0]:
                reload_at.pop(0)
                ok = publish(args)
                events.append({"t_s": now, "kind": "reload" if ok else "reload_failed"})
                print(f"soak: {now:6.0f}s published a new ranking version ({'ok' if ok else 'FAILED'})")
            if redis_at is not None and now >= redis_at:
                redis_at = None
                events.append({"t_s": now, "kind": "redis_restart"})
                print(f"soak: {now:6.0f}s restarting Redis (down ~5 s)")
                redis_pid = restart_redis(args, redis_pid)
                events[-1]["up_s"] = time.time() - t0
            if now >= next_sample:
                next_sample += args.interval
                p = proc_sample(args.pid)
                b, c, version = scrape(args.metrics)
                t = time.time()
                calls, errors = window(prev_c, c, PREDICT)
                rcalls, rerrors = window(prev_c, c, REPORT)
                row = [round(now, 1), round(p["rss_mib"], 1), p["fds"], p["threads"],
                       fmt(quantile(0.5, prev_b, b)), fmt(quantile(0.99, prev_b, b)),
                       round(calls / (t - prev_t), 1), int(errors), version,
                       round(rcalls / (t - prev_t), 1), int(rerrors)]
                w.writerow(row)
                f.flush()
                rows.append(row)
                prev_t, prev_b, prev_c = t, b, c
                if len(rows) % 6 == 0:
                    print(f"soak: {now:6.0f}s rss {row[1]} MiB fds {row[2]} threads {row[3]} p99 {row[5]} ms "
                          f"{row[6]} req/s errors {row[7]} version {row[8]} ReportEvents errors {row[10]}",
                          flush=True)
            time.sleep(0.5)
    load.finish()
    last_c = scrape(args.metrics)[1]
    args.totals = {m: window(first_c, last_c, path) for m, path in (("predict", PREDICT), ("report", REPORT))}
    json.dump(events, open(os.path.join(args.out, "events.json"), "w"), indent=1)
    plot(rows, events, args)
    sys.exit(summary(rows, events, load, args))


def window(before, after, method):
    """Calls of one method in the window and how many were not OK."""
    delta = {code: v - before.get((m, code), 0.0) for (m, code), v in after.items() if m == method}
    calls = sum(delta.values())
    return calls, calls - delta.get("OK", 0.0)


def frange(start, stop, step):
    t = start
    while t <= stop:
        yield t
        t += step


def fmt(v):
    return "" if v is None else round(v, 2)


# === plot and summary ===


def plot(rows, events, args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r[0] / 60 for r in rows]
    fig, axes = plt.subplots(4, 1, figsize=(9, 8), sharex=True)
    series = [
        ("RSS (MiB)", [r[1] for r in rows]),
        ("open fds", [r[2] for r in rows]),
        ("threads", [r[3] for r in rows]),
        ("Predict p99 (ms)", [r[5] if r[5] != "" else float("nan") for r in rows]),
    ]
    for ax, (label, ys) in zip(axes, series):
        ax.plot(t, ys, lw=1.2)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        top = max((y for y in ys if y == y), default=1)
        ax.set_ylim(0, top * 1.2 + 1)
        for e in events:
            color = "tab:red" if e["kind"] == "redis_restart" else "tab:green"
            ax.axvline(e["t_s"] / 60, color=color, lw=0.8, ls="--")
    axes[0].axvline(args.warmup / 60, color="grey", lw=0.8, ls=":")
    rps = axes[3].twinx()
    rps.plot(t, [r[6] for r in rows], lw=0.8, color="grey", alpha=0.6)
    rps.set_ylabel("Predict/s (grey)")
    rps.set_ylim(bottom=0)
    axes[-1].set_xlabel("minutes (green: model version published, red: Redis restart, grey: end of warm-up)")
    fig.suptitle(f"augur soak: {args.minutes:g} min of Predict + ReportEvents (simulate, concurrency {args.concurrency})")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "soak.png"), dpi=80)


def summary(rows, events, load, args):
    after = [r for r in rows if r[0] >= args.warmup]
    base = after[0] if after else rows[0]
    end = rows[-1]
    growth = end[1] - base[1]
    redis = next((e for e in events if e["kind"] == "redis_restart"), None)

    def p99(sel):
        vals = [r[5] for r in sel if r[5] != ""]
        return f"{max(vals):.1f} max / {sorted(vals)[len(vals) // 2]:.1f} median" if vals else "n/a"

    phases = [("warm-up", [r for r in rows if r[0] < args.warmup])]
    if redis:
        phases += [("before Redis restart", [r for r in after if r[0] < redis["t_s"]]),
                   ("Redis restart +60 s", [r for r in after if redis["t_s"] <= r[0] < redis["t_s"] + 60]),
                   ("after", [r for r in after if r[0] >= redis["t_s"] + 60])]
    else:
        phases.append(("after warm-up", after))
    sim = {"requests": 0, "impressions": 0, "clicks": 0, "rejected": 0, "failures": {}}
    for rep in load.reports:
        for k in ("requests", "impressions", "clicks", "rejected"):
            sim[k] += rep.get(k, 0)
        for k, v in rep.get("failures", {}).items():
            sim["failures"][k] = sim["failures"].get(k, 0) + v
    versions = [r[8] for r in rows if r[8] is not None]
    final = subprocess.run([args.augur, "predict", "--addr", args.addr, "--scene", "ranking", "--user", "u1",
                            "--items", "i1,i2,i3"], capture_output=True, text=True)
    out = {
        "minutes": args.minutes,
        "rss_at_warmup_mib": base[1], "rss_warmup_at_s": base[0], "rss_end_mib": end[1],
        "rss_growth_mib": round(growth, 1), "rss_max_mib": max(r[1] for r in rows),
        "fds_max": max(r[2] for r in rows), "fds_end": end[2], "fds_at_warmup": base[2],
        "threads_max": max(r[3] for r in rows), "threads_end": end[3], "threads_at_warmup": base[3],
        "p99_ms_by_phase": {name: p99(sel) for name, sel in phases},
        "predict_calls_errors_metrics": [int(v) for v in args.totals["predict"]],
        "report_calls_errors_metrics": [int(v) for v in args.totals["report"]],
        "last_error_window_end_s": max((r[0] for r in rows if r[7] or r[10]), default=None),
        "simulate": sim, "simulate_runs": len(load.reports), "simulate_runs_failed": load.runs_failed,
        "reloads": sum(e["kind"] == "reload" for e in events),
        "reloads_failed": sum(e["kind"] == "reload_failed" for e in events),
        "model_version_first_last": [versions[0], versions[-1]] if versions else None,
        "redis_restart_at_s": round(redis["t_s"]) if redis else None,
        "final_predict_ok": final.returncode == 0,
    }
    json.dump(out, open(os.path.join(args.out, "summary.json"), "w"), indent=1)
    print("== soak summary")
    for k, v in out.items():
        print(f"{k}: {v}")
    if final.returncode != 0:
        print(f"soak: FAIL final predict: {final.stderr.strip()}")
    if growth > args.max_growth_mib:
        print(f"soak: FAIL RSS grew {growth:.1f} MiB after warm-up (limit {args.max_growth_mib:g})")
    return 0 if growth <= args.max_growth_mib and final.returncode == 0 else 1


if __name__ == "__main__":
    main()
