#!/usr/bin/env python3
"""Turn joined training samples (`augur samples dump` JSON lines) into a trainer input
directory exactly like `augur features export` writes, so train.py trains on them unchanged.

  augur samples dump --log DIR | python samples.py --meta EXPORT_DIR/meta.json --out OUT [--label click]
                                                   [--holdout 0.2]
  python samples.py dump.jsonl --meta EXPORT_DIR --out OUT
  python samples.py --parquet SINK_DIR --meta EXPORT_DIR --out OUT     (a `parquet` sink's files)
  python samples.py --self-test

Samples carry the model inputs exactly as served (one [1, width] row per input) but not the
spec around them: --meta names a meta.json (or a directory holding one) from `augur features
export` of the same scene, whose inputs (dtype, width, vocab), output name and feature layout are
kept; every sample is checked against them.

The Parquet sink's directory (<dir>/dt=/hour=/scene=/part-*.parquet, read with pyarrow) gives the
same arrays as the dump of the same log: the input_<name> columns are the inputs, label_<type> the
labels, and the same rules below apply (orphans are never in it).

One row per sample_id: a sink may deliver a record twice and a late label yields a correction
with a higher revision, so only the highest revision is kept. label = 1 when the --label event
type (default click) is among the sample's labels, else 0. Orphans and other scenes' samples are
skipped and counted in meta.json's "source".

--holdout F leaves the newest fraction F of the rows (by prediction time) out of OUT, so the
publish gate can judge the model on samples it never saw: meta.json's "window" says which
prediction times the rows written cover, [from_ms, to_ms), to_ms being the first held-out
prediction time (`augur models publish` evaluates on samples from to_ms on).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


class SamplesError(ValueError):
    pass


def read_spec(meta_path: str | Path) -> dict:
    p = Path(meta_path)
    if p.is_dir():
        p = p / "meta.json"
    try:
        meta = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SamplesError(f"{p}: {e}")
    if not isinstance(meta.get("inputs"), list) or not meta["inputs"] or not meta.get("output"):
        raise SamplesError(f"{p}: not an `augur features export` meta.json (needs inputs and output)")
    return meta


def latest_samples(lines, scene: str | None) -> tuple[dict, dict]:
    """sample_id -> the highest-revision sample; and counts of what was skipped."""
    kept: dict[str, dict] = {}
    counts = {"records": 0, "orphans": 0, "other_scenes": 0, "superseded": 0}
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise SamplesError(f"line {n}: not JSON: {e}")
        counts["records"] += 1
        if rec.get("kind") != "sample":
            counts["orphans"] += 1
            continue
        if scene and rec.get("scene") != scene:
            counts["other_scenes"] += 1
            continue
        sid = rec.get("sample_id")
        if not isinstance(sid, str) or not sid:
            raise SamplesError(f"line {n}: sample without a sample_id")
        rec["_line"] = n
        old = kept.get(sid)
        if old is None or rec.get("revision", 0) > old.get("revision", 0):
            kept[sid] = rec
        if old is not None:
            counts["superseded"] += 1
    return kept, counts


# The array of each row's propensity in features.npz (train.py --ipw weighs rows by its inverse).
PROPENSITY = "propensity"


def propensity_of(labels: list[dict]) -> float:
    """The propensity the caller reported as its impression event's value; 1.0 without one."""
    shown = [lb.get("value") for lb in labels if lb.get("type") == "impression"]
    if shown and isinstance(shown[0], (int, float)) and 0.0 < shown[0] <= 1.0:
        return float(shown[0])
    return 1.0


def to_arrays(samples: list[dict], spec: list[dict], label_type: str) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    """Per-input [N, width] arrays, the 0/1 label, rows with a fallback per feature, and each
    row's propensity: the probability the caller showed the item with, as it reported it in the
    impression event's `value` (1.0 when it did not)."""
    cols = {s["name"]: [] for s in spec}
    labels = np.zeros(len(samples), np.float32)
    propensity = np.ones(len(samples), np.float32)
    fallbacks: dict[str, int] = {}
    for i, rec in enumerate(samples):
        by_name = {t.get("name"): t for t in rec.get("inputs", [])}
        for s in spec:
            t = by_name.get(s["name"])
            where = f"line {rec['_line']} ({rec['sample_id']}): input {s['name']!r}"
            if t is None:
                raise SamplesError(f"{where} is missing: the samples were served with another spec")
            if t.get("dtype") != s["dtype"]:
                raise SamplesError(f"{where} is {t.get('dtype')}, meta.json says {s['dtype']}")
            values = t.get("values")
            if not isinstance(values, list) or len(values) != s["width"]:
                raise SamplesError(f"{where} has {len(values) if isinstance(values, list) else values!r} "
                                   f"values, meta.json says width {s['width']}")
            cols[s["name"]].append(values)
        labels[i] = float(any(lb.get("type") == label_type for lb in rec.get("labels", [])))
        propensity[i] = propensity_of(rec.get("labels", []))
        for f in {f.get("feature") for f in rec.get("fallbacks", [])}:
            fallbacks[f] = fallbacks.get(f, 0) + 1
    arrays = {}
    for s in spec:
        dtype = np.int64 if s["dtype"] == "int64" else np.float32
        try:
            arrays[s["name"]] = np.asarray(cols[s["name"]], dtype=dtype).reshape(len(samples), s["width"])
        except (TypeError, ValueError) as e:
            raise SamplesError(f"input {s['name']!r}: values are not {s['dtype']}: {e}")
    return arrays, labels, fallbacks, propensity


def convert(lines, meta_path: str | Path, out: str | Path, label_type: str = "click",
            holdout: float = 0.0) -> dict:
    """Writes OUT/features.npz + OUT/meta.json from dump lines; returns the meta written."""
    spec_meta = read_spec(meta_path)
    scene = spec_meta.get("scene") or None
    kept, counts = latest_samples(lines, scene)
    # A stable order, independent of delivery order and duplicates.
    samples = sorted(kept.values(), key=lambda r: (r.get("timestamp_ms", 0), r["sample_id"]))
    ts = [r.get("timestamp_ms", 0) for r in samples]
    keep, window = split_holdout(ts, holdout, counts)
    arrays, labels, fallbacks, propensity = to_arrays(samples[:keep], spec_meta["inputs"], label_type)
    return write_out(out, spec_meta, arrays, labels, fallbacks, counts, window, label_type, propensity)


def split_holdout(ts: list, holdout: float, counts: dict) -> tuple[int, dict | None]:
    """How many of the rows (sorted by prediction time `ts`) are kept, and their window."""
    if not len(ts):
        return 0, None
    end, keep = int(ts[-1]) + 1, len(ts)
    if holdout > 0:
        # Everything predicted at or after the cutoff time is held out (ties stay together).
        cutoff = int(ts[min(len(ts) - 1, int(len(ts) * (1 - holdout)))])
        held = sum(1 for t in ts if t >= cutoff)
        counts["held_out"] = held
        keep, end = len(ts) - held, cutoff
    return keep, {"from_ms": int(ts[0]), "to_ms": end, "rows": keep}


def write_out(out, spec_meta, arrays, labels, fallbacks, counts, window, label_type, propensity) -> dict:
    label_key = "label"
    for key in (label_key, PROPENSITY):
        if key in arrays:
            raise SamplesError(f"an input is named {key!r}, which the {key} array needs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "features.npz", **arrays, **{label_key: labels, PROPENSITY: propensity})
    meta = {
        "scene": spec_meta.get("scene", ""),
        "rows": int(len(labels)),
        "output": spec_meta["output"],
        "label": label_key,
        "propensity": PROPENSITY,
        "inputs": spec_meta["inputs"],
        "features": spec_meta.get("features", []),
        "fallbacks": fallbacks,
        "source": dict(counts, kind="samples", label_type=label_type, positives=int(labels.sum())),
        "window": window and dict(window, positives=int(labels.sum())),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def convert_parquet(root: str | Path, meta_path: str | Path, out: str | Path, label_type: str = "click",
                    holdout: float = 0.0) -> dict:
    """The same as `convert`, from a `parquet` sink's directory (pyarrow, column-wise)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    spec_meta = read_spec(meta_path)
    scene = spec_meta.get("scene") or None
    # Hive partitions (dt, hour, scene); files named .* or _* (temporaries, _SUCCESS) are skipped.
    table = ds.dataset(str(root), format="parquet", partitioning="hive").to_table()
    counts = {"records": table.num_rows, "orphans": 0, "other_scenes": 0, "superseded": 0}
    if scene:
        mine = pc.equal(table["scene"], scene)
        counts["other_scenes"] = table.num_rows - pc.sum(mine).as_py() if table.num_rows else 0
        table = table.filter(mine)
    # The highest revision per sample_id (duplicates of it are the same row).
    table = table.sort_by([("sample_id", "ascending"), ("revision", "descending")])
    ids = table["sample_id"].to_pylist()
    first = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    counts["superseded"] = table.num_rows - len(first)
    table = table.take(pa.array(first, pa.int64())).sort_by([("timestamp_ms", "ascending"), ("sample_id", "ascending")])
    ts = table["timestamp_ms"].to_pylist()
    keep, window = split_holdout(ts, holdout, counts)
    table = table.slice(0, keep)
    n = table.num_rows
    arrays = {}
    for s in spec_meta["inputs"]:
        column = f"input_{s['name']}"
        if column not in table.column_names:
            raise SamplesError(f"input {s['name']!r} is missing: the samples were served with another spec")
        col = table[column].combine_chunks() if n else None
        width = col.type.list_size if n else s["width"]
        if width != s["width"]:
            raise SamplesError(f"input {s['name']!r} has {width} values, meta.json says width {s['width']}")
        dtype = np.int64 if s["dtype"] == "int64" else np.float32
        values = col.flatten().to_numpy(zero_copy_only=False) if n else np.zeros(0)
        if n and values.dtype != dtype:
            raise SamplesError(f"input {s['name']!r} is {values.dtype}, meta.json says {s['dtype']}")
        arrays[s["name"]] = np.asarray(values, dtype=dtype).reshape(n, s["width"])
    label_col = f"label_{label_type}"
    if n and label_col in table.column_names:
        labels = np.asarray(table[label_col].to_numpy(zero_copy_only=False), np.float32)
    else:
        labels = np.asarray([float(any(lb["type"] == label_type for lb in row))
                             for row in (table["labels"].to_pylist() if n else [])], np.float32)
    fallbacks: dict[str, int] = {}
    for row in (table["fallbacks"].to_pylist() if n else []):
        for f in set(row):
            fallbacks[f] = fallbacks.get(f, 0) + 1
    propensity = np.ones(n, np.float32)
    for i, row in enumerate(table["labels"].to_pylist() if n else []):
        propensity[i] = propensity_of(row)
    return write_out(out, spec_meta, arrays, labels, fallbacks, counts, window, label_type, propensity)


def self_test() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train import ExportError, load_export

    def sample(sid, rev, ts, ids, dense, labels, scene="ranking", fallbacks=(), shown_with=None):
        return {"kind": "sample", "sequence": 0, "sample_id": sid, "revision": rev, "scene": scene,
                "timestamp_ms": ts, "request_id": sid.split(":")[0],
                "inputs": [{"name": "ids", "dtype": "int64", "shape": [1, 2], "values": ids},
                           {"name": "dense", "dtype": "float32", "shape": [1, 1], "values": [dense]}],
                "labels": [dict({"type": t, "timestamp_ms": ts + 1},
                                **({"value": shown_with} if t == "impression" and shown_with else {}))
                           for t in labels],
                "fallbacks": [{"feature": f, "reason": "FALLBACK_REASON_MISSING_ROW"} for f in fallbacks]}

    records = [
        sample("r1:0", 0, 20, [1, 2], 0.5, ["impression"]),
        sample("r1:1", 0, 20, [3, 4], 0.25, ["impression"], fallbacks=["age"]),
        {"kind": "orphan", "sequence": 0, "request_id": "gone", "item_id": "x", "type": "click"},
        sample("r1:0", 1, 20, [1, 2], 0.5, ["impression", "click"], shown_with=0.25),  # the correction wins
        sample("r0:0", 0, 10, [5, 6], 1.5, ["impression", "conversion"]),
        sample("r1:1", 0, 20, [3, 4], 0.25, ["impression"], fallbacks=["age"]),  # delivered twice
        sample("s9:0", 0, 5, [7, 8], 2.0, ["click"], scene="search_suggest"),
    ]
    meta = {"scene": "ranking", "rows": 0, "output": "ctr", "label": "label",
            "inputs": [{"name": "ids", "dtype": "int64", "width": 2, "vocab": 10},
                       {"name": "dense", "dtype": "float32", "width": 1}],
            "features": [{"name": "item", "input": "ids", "offset": 0, "width": 2}]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta))
        lines = [json.dumps(r) for r in records]
        written = convert(lines, tmp, tmp / "out")
        d = load_export(tmp / "out")  # the trainer's own loader accepts it
        assert d["rows"] == 3, d["rows"]
        # Ordered by prediction time: r0:0, r1:0, r1:1.
        assert d["arrays"]["ids"].tolist() == [[5, 6], [1, 2], [3, 4]], d["arrays"]["ids"]
        assert d["arrays"]["ids"].dtype == np.int64 and d["arrays"]["dense"].dtype == np.float32
        assert d["dense"][:, 0].tolist() == [1.5, 0.5, 0.25]
        assert d["label"].tolist() == [0.0, 1.0, 0.0], d["label"]
        # The impression's reported propensity (r1:0), 1.0 where none was reported.
        assert d["propensity"].tolist() == [1.0, 0.25, 1.0], d["propensity"]
        assert written["fallbacks"] == {"age": 1}
        src = written["source"]
        assert (src["records"], src["orphans"], src["other_scenes"], src["superseded"]) == (7, 1, 1, 2), src
        conv = convert(lines, tmp / "meta.json", tmp / "conv", label_type="conversion")
        assert load_export(tmp / "conv")["label"].tolist() == [1.0, 0.0, 0.0]
        assert conv["source"]["positives"] == 1
        # Samples served with another spec are refused, not silently reshaped.
        wide = dict(meta, inputs=[dict(meta["inputs"][0], width=3), meta["inputs"][1]])
        (tmp / "wide.json").write_text(json.dumps(wide))
        try:
            convert(lines, tmp / "wide.json", tmp / "bad")
            raise AssertionError("a width mismatch was accepted")
        except SamplesError as e:
            assert "width 3" in str(e), e
        # Out-of-vocab ids get past this tool but not past the trainer's loader.
        (tmp / "tiny.json").write_text(json.dumps(dict(meta, inputs=[dict(meta["inputs"][0], vocab=4),
                                                                      meta["inputs"][1]])))
        convert(lines, tmp / "tiny.json", tmp / "tiny")
        try:
            load_export(tmp / "tiny")
            raise AssertionError("out-of-vocab ids were accepted")
        except ExportError:
            pass
        empty = convert([], tmp, tmp / "empty")
        assert empty["rows"] == 0 and load_export(tmp / "empty")["rows"] == 0 and empty["window"] is None
        # The window: all rows [10, 21); with a holdout, the newest third (prediction time 20,
        # both rows of r1) is left out and the window ends where it starts.
        assert written["window"] == {"from_ms": 10, "to_ms": 21, "rows": 3, "positives": 1}, written["window"]
        held = convert(lines, tmp, tmp / "held", holdout=0.3)
        assert held["rows"] == 1 and held["source"]["held_out"] == 2, held
        assert held["window"] == {"from_ms": 10, "to_ms": 20, "rows": 1, "positives": 0}, held["window"]
    print("samples ok")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?", default="-", help="JSON lines of `augur samples dump` ('-' = stdin)")
    ap.add_argument("--meta", help="meta.json (or its directory) of `augur features export` for the scene")
    ap.add_argument("--out", help="output directory (features.npz + meta.json)")
    ap.add_argument("--label", default="click", help="event type that makes a sample positive")
    ap.add_argument("--holdout", type=float, default=0.0,
                    help="leave the newest fraction of rows (by prediction time) out, for the publish gate")
    ap.add_argument("--parquet", help="read a `parquet` sample sink's directory instead of dump lines")
    ap.add_argument("--self-test", action="store_true", help="run the self-test and exit")
    a = ap.parse_args(argv)
    if a.self_test:
        self_test()
        return 0
    if not a.meta or not a.out:
        ap.error("--meta and --out are required")
    if not 0.0 <= a.holdout < 1.0:
        ap.error("--holdout is a fraction in [0, 1)")
    try:
        if a.parquet:
            meta = convert_parquet(a.parquet, a.meta, a.out, a.label, a.holdout)
        elif a.input == "-":
            meta = convert(sys.stdin, a.meta, a.out, a.label, a.holdout)
        else:
            with open(a.input) as f:
                meta = convert(f, a.meta, a.out, a.label, a.holdout)
    except (SamplesError, OSError) as e:
        print(f"samples.py: {e}", file=sys.stderr)
        return 1
    src = meta["source"]
    print(f"{meta['rows']} rows ({src['positives']} with {a.label}) to {a.out}; skipped {src['orphans']} orphans, "
          f"{src['other_scenes']} other-scene samples, {src['superseded']} superseded or repeated"
          + (f"; held out the newest {src['held_out']} from {meta['window']['to_ms']} ms" if "held_out" in src else ""),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
