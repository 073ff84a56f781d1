#!/usr/bin/env python3
"""MovieLens-100K -> augur CSV tables (users.csv, items.csv, train.csv, test.csv).

  python tools/movielens/prepare.py --data ../shared/data/movielens-100k --out /tmp/ml

label = 1 if rating >= 4 else 0. All ratings are sorted by (ts, user_id, item_id); the first
floor(80%) go to train.csv, the rest to test.csv. The data's licence forbids redistribution:
write --out to a scratch dir, never into the repository (refused unless --allow-in-repo).
Standard library only.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "movielens-100k"
ENC = "latin-1"  # u.item is ISO-8859-1; the other files are ASCII


def read_rows(path: Path, sep: str, min_fields: int) -> list[list[str]]:
    rows = []
    with path.open(encoding=ENC, newline="") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split(sep)
            if len(parts) < min_fields:
                raise SystemExit(f"{path}:{n}: expected >= {min_fields} fields, got {len(parts)}")
            rows.append(parts)
    return rows


def release_year(date: str) -> str:
    """'01-Jan-1995' -> '1995'; '' (unknown) -> ''."""
    date = date.strip()
    if not date:
        return ""
    year = date.rsplit("-", 1)[-1]
    if not (len(year) == 4 and year.isdigit()):
        raise SystemExit(f"u.item: unexpected release date {date!r}")
    return str(int(year))


def write_csv(path: Path, header: list[str], rows) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")  # QUOTE_MINIMAL: quotes only when needed
        w.writerow(header)
        for r in rows:
            w.writerow(r)
            n += 1
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help=f"ml-100k dir (default {DEFAULT_DATA})")
    ap.add_argument("--out", required=True, help="output dir (created if missing)")
    ap.add_argument("--train-frac", type=float, default=0.8)
    ap.add_argument("--allow-in-repo", action="store_true",
                    help="allow --out inside the repository (the data must not be committed)")
    a = ap.parse_args(argv)
    data, out = Path(a.data), Path(a.out).resolve()
    if not a.allow_in_repo and (out == REPO or REPO in out.parents):
        ap.error(f"--out {out} is inside the repository {REPO}; MovieLens may not be "
                 "redistributed, write to a scratch dir (or pass --allow-in-repo)")
    if not 0.0 < a.train_frac < 1.0:
        ap.error("--train-frac must be in (0, 1)")
    for name in ("u.data", "u.user", "u.item", "u.genre"):
        if not (data / name).is_file():
            ap.error(f"{data / name} not found")

    # u.genre: "name|index"; the index is the position of the genre's flag in u.item.
    genres = {int(i): g for g, i in read_rows(data / "u.genre", "|", 2)}
    genre_names = [genres[i] for i in range(len(genres))]
    if sorted(genres) != list(range(len(genres))):
        raise SystemExit("u.genre: indices are not 0..n-1")

    users = []
    for uid, age, gender, occ, zipc in (r[:5] for r in read_rows(data / "u.user", "|", 5)):
        users.append((int(uid), int(age), gender, occ, zipc.strip()[:3]))
    users.sort()

    items = []
    for r in read_rows(data / "u.item", "|", 5 + len(genre_names)):
        flags = r[5:5 + len(genre_names)]
        if any(f not in ("0", "1") for f in flags):
            raise SystemExit(f"u.item: bad genre flags for item {r[0]}: {flags}")
        names = [g for g, f in zip(genre_names, flags) if f == "1"]
        items.append((int(r[0]), release_year(r[2]), "|".join(names)))
    items.sort()

    ratings = []
    for r in read_rows(data / "u.data", "\t", 4):
        uid, iid, rating, ts = (int(x) for x in r[:4])
        ratings.append((ts, uid, iid, 1 if rating >= 4 else 0))
    ratings.sort()  # by (ts, user_id, item_id); the label never decides the order
    keys = {(u, i) for _, u, i, _ in ratings}
    if len(keys) != len(ratings):
        print(f"warning: {len(ratings) - len(keys)} duplicate (user, item) ratings", file=sys.stderr)
    known_u, known_i = {u[0] for u in users}, {i[0] for i in items}
    unknown = {u for _, u, _, _ in ratings} - known_u, {i for _, _, i, _ in ratings} - known_i
    if unknown[0] or unknown[1]:
        raise SystemExit(f"u.data references {len(unknown[0])} unknown users and "
                         f"{len(unknown[1])} unknown items")

    n_train = int(len(ratings) * a.train_frac)  # floor
    train, test = ratings[:n_train], ratings[n_train:]

    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "users.csv", ["user_id", "age", "gender", "occupation", "zip3"], users)
    write_csv(out / "items.csv", ["item_id", "year", "genres"], items)
    for name, part in (("train.csv", train), ("test.csv", test)):
        write_csv(out / name, ["user_id", "item_id", "label", "ts"],
                  ((u, i, y, ts) for ts, u, i, y in part))

    def rate(part):
        return sum(r[3] for r in part) / len(part) if part else float("nan")
    print(f"users.csv: {len(users)} users; items.csv: {len(items)} items "
          f"({sum(1 for i in items if not i[1])} without a year, "
          f"{sum(1 for i in items if not i[2])} without genres)")
    for name, part in (("train.csv", train), ("test.csv", test), ("all", ratings)):
        span = f", ts {part[0][0]}..{part[-1][0]}" if part else ""
        print(f"{name}: {len(part)} rows, positive rate {rate(part):.4f}{span}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
