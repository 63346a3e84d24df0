"""Behaviour before and after a refactor: run every command on one small SmolLM2 store, then
compare two such runs file by file.

    # the code to compare against, e.g. main's commit, unpacked outside the repo
    git archive cee200f | tar -x -C /tmp/before
    python -m bench.behaviour run /tmp/out-before --code /tmp/before
    python -m bench.behaviour run /tmp/out-after            # this checkout
    python -m bench.behaviour compare /tmp/out-before /tmp/out-after

``run`` calls the ``layercal`` commands in subprocesses with ``--code``'s tree first on
``PYTHONPATH`` (so the code under test is the only thing that differs): extract, store info and
verify, summary, analyze, nullspace, direction fit, steer (offline and ``--online``), analyze
again (its report then holds the three intervention sections) and the SmolLM2 demo, plus the
``--help`` of every command. ``compare`` then checks: the stores' block digests, every output
file (CSV and JSON cell by cell, numbers equal; text line by line; figures byte for byte) and
every command's printed output, with the run folders, timings and dates masked.
Exit status 1 when anything differs; each difference is printed.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from bench.harness import REPO, data_dir

MODEL = "smollm2-135m"
SELECT = ["--dataset", "mmlu", "--category", "humanities", "--limit", "64", "--seed", "0"]
HELP = [
    [],
    ["extract"],
    ["summary"],
    ["analyze"],
    ["nullspace"],
    ["direction", "fit"],
    ["steer"],
    ["store"],
    *[["store", c] for c in ("info", "verify", "pack", "publish", "merge")],
]


def commands(out: Path) -> list[tuple[str, list[str]]]:
    """(name, argv after ``python -m``) of each step, in order."""
    store, lc = str(out / "store.zarr"), ["layercal.cli"]
    direction = str(out / "direction")
    steps = [
        ("extract", [*lc, "extract", "--model", MODEL, *SELECT, "--dtype", "float32"]),
        ("info", [*lc, "store", "info", store, "--json"]),
        ("verify", [*lc, "store", "verify", store]),
        ("summary", [*lc, "summary", store]),
        ("analyze", [*lc, "analyze", store, "--out", str(out / "report")]),
        ("nullspace", [*lc, "nullspace", store, "--out", str(out / "report" / "nullspace")]),
        ("direction", [*lc, "direction", "fit", store, "-o", direction, "--estimator", "pca"]),
        ("steer", [*lc, "steer", store, "--direction", direction, "--out", str(out / "steer")]),
        (
            "steer-online",
            [*lc, "steer", store, "--direction", direction, "--out", str(out / "steer-online")]
            + ["--online", "--model", MODEL, "--alphas=-1,1", "--random", "1", "--limit", "16"],
        ),
        ("analyze-all", [*lc, "analyze", store, "--out", str(out / "report")]),
        (
            "demo",
            ["layercal.demo", "--preset", "smollm2", "--n", "32"]
            + ["--store", str(out / "demo.zarr"), "--report", str(out / "demo-report")],
        ),
    ]
    steps[0][1].extend(["--out", store])
    helps = [(f"help-{'-'.join(h) or 'layercal'}", [*lc, *h, "--help"]) for h in HELP]
    helps.append(("help-python-m-extract", ["extract", "--help"]))
    helps.append(("help-demo", ["layercal.demo", "--help"]))
    return steps + helps


def run(out: Path, code: Path) -> int:
    out.mkdir(parents=True, exist_ok=False)
    env = {**os.environ, "PYTHONPATH": str(code.resolve()), "COLUMNS": "100"}
    env["LAYERCAL_DATA_DIR"] = data_dir()
    (out / "logs").mkdir()
    for name, argv in commands(out):
        p = subprocess.run(
            [sys.executable, "-m", *argv], cwd=out, env=env, capture_output=True, text=True
        )
        (out / "logs" / f"{name}.txt").write_text(f"exit {p.returncode}\n{p.stdout}")
        print(f"{name}: exit {p.returncode}", flush=True)
        if p.returncode != 0 and not name.startswith("help"):
            print(p.stderr[-3000:], file=sys.stderr)
            return 1
    return 0


# --- comparison --------------------------------------------------------------------------

VOLATILE_KEYS = {
    "time",
    "started",
    "finished",
    "elapsed",
    "elapsed_s",
    "seconds",
    "host",
    "hostname",
    "git_commit",
    "created",
    "pid",
    "wall_s",
}
# ISO times, durations such as "12.3 s" or "took 41 s", the tqdm progress lines
MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)?"), "<time>"),
    (re.compile(r"\b\d+(\.\d+)?\s?(s|ms|min)\b"), "<dur>"),
    (re.compile(r"\b\d+(\.\d+)? ?(prompts|examples|it|ex)/s\b"), "<rate>"),
    (re.compile(r"git commit [0-9a-f]{7,40}"), "git commit <sha>"),
]


def masked(text: str, root: Path) -> str:
    text = text.replace(str(root.resolve()), "<run>").replace(str(root), "<run>")
    for pattern, repl in MASKS:
        text = pattern.sub(repl, text)
    return text


def same_json(a: object, b: object, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            out.append(f"{where}: keys {list(a)} != {list(b)}")
        for k in a.keys() & b.keys():
            if k not in VOLATILE_KEYS:
                same_json(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            same_json(x, y, f"{where}[{i}]", out)
    elif a != b and not (a != a and b != b):  # NaN equals NaN here
        out.append(f"{where}: {a!r} != {b!r}")


def json_of(path: Path, root: Path) -> object:
    return json.loads(masked(path.read_text(), root))


def rows_of(path: Path, root: Path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(masked(path.read_text(), root))))


def compare_file(rel: str, a: Path, b: Path, ra: Path, rb: Path) -> list[str]:
    out: list[str] = []
    if a.suffix == ".json":
        same_json(json_of(a, ra), json_of(b, rb), rel, out)
    elif a.suffix == ".csv":
        x, y = rows_of(a, ra), rows_of(b, rb)
        if x != y:
            bad = [i for i, (u, v) in enumerate(zip(x, y)) if u != v][:3]
            out.append(f"{rel}: rows {bad} differ (of {len(x)} vs {len(y)})")
    elif a.suffix in (".md", ".html", ".txt", ".svg", ".log", ".tex"):
        ta, tb = masked(a.read_text(), ra), masked(b.read_text(), rb)
        if ta != tb:
            diff = [
                (i, u, v)
                for i, (u, v) in enumerate(zip(ta.splitlines(), tb.splitlines()))
                if u != v
            ]
            first = diff[0] if diff else ("length", "", "")
            out.append(
                f"{rel}: text differs, first at line {first[0]}: {first[1]!r} vs {first[2]!r}"
            )
    elif a.read_bytes() != b.read_bytes():
        out.append(f"{rel}: bytes differ")
    return out


def compare_stores(a: Path, b: Path, name: str) -> list[str]:
    """Block digests, every array's values and the attributes (run records masked)."""
    import numpy as np
    import zarr

    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    out: list[str] = []
    arrays_a, arrays_b = dict(ga.arrays()), dict(gb.arrays())
    da, db = np.asarray(arrays_a["block_sha256"][:]), np.asarray(arrays_b["block_sha256"][:])
    same = bool(np.array_equal(da, db))
    print(f"{name}: {len(da)} block digests {'equal' if same else 'DIFFER'}")
    if not same:
        out.append(f"{name}: block digests differ")
    if sorted(arrays_a) != sorted(arrays_b):
        out.append(f"{name}: arrays {sorted(arrays_a)} != {sorted(arrays_b)}")
    for k in sorted(arrays_a.keys() & arrays_b.keys()):
        x, y = np.asarray(arrays_a[k][...]), np.asarray(arrays_b[k][...])
        if x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
            out.append(f"{name}/{k}: values differ")
    print(f"{name}: {len(arrays_a)} arrays compared")
    same_json(dict(ga.attrs), dict(gb.attrs), f"{name}.attrs", out)
    return out


def files(root: Path) -> set[str]:
    skip = (".zarr/", "logs/")
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file()
        and not any(s in f"{p.relative_to(root)}/" for s in skip)
        and ".cache/" not in str(p.relative_to(root))
    }


def compare(ra: Path, rb: Path) -> int:
    problems: list[str] = []
    checked = 0
    for store in ("store.zarr", "demo.zarr"):
        problems += compare_stores(ra / store, rb / store, store)
    fa, fb = files(ra), files(rb)
    for rel in sorted(fa ^ fb):
        problems.append(f"{rel}: only in {'the first' if rel in fa else 'the second'} run")
    for rel in sorted(fa & fb):
        problems += compare_file(rel, ra / rel, rb / rel, ra, rb)
        checked += 1
    for log in sorted((ra / "logs").iterdir()):
        x = masked(log.read_text(), ra)
        y = masked((rb / "logs" / log.name).read_text(), rb)
        checked += 1
        if x != y:
            lines = [(u, v) for u, v in zip(x.splitlines(), y.splitlines()) if u != v][:2]
            problems.append(f"logs/{log.name}: printed output differs: {lines}")
    print(f"{checked} files and command outputs compared")
    for p in problems:
        print("DIFF", p)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.behaviour", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run every command into a new folder")
    r.add_argument("out", type=Path)
    r.add_argument(
        "--code", type=Path, default=REPO, help="the source tree to run (default this one)"
    )
    c = sub.add_parser("compare", help="compare two run folders")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = p.parse_args(argv)
    if args.command == "run":
        return run(args.out, args.code)
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
