"""``make demo``: extract SmolLM2-135M on 200 MMLU humanities questions, then analyse the store.

Reruns are cheap: a complete store is reused, an interrupted one is resumed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m layercal.demo", description=__doc__)
    p.add_argument("--store", default="stores/demo-smollm2-mmlu-humanities.zarr")
    p.add_argument("--report", default="reports/demo")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--model", default="smollm2-135m")
    args = p.parse_args(argv)

    from layercal import format as fmt
    from layercal.cli import main as layercal  # both stages, as the `layercal` command

    store = Path(args.store)
    cmd = [
        "--model",
        args.model,
        "--dataset",
        "mmlu",
        "--split",
        "test",
        "--category",
        "humanities",
        "--limit",
        str(args.n),
        "--seed",
        "0",
        "--out",
        str(store),
        "--dtype",
        "float32",
        "--batch-size",
        "16",
    ]
    if os.environ.get("LAYERCAL_DATA_DIR") is None and Path("../shared/data/mmlu").is_dir():
        cmd += ["--data-dir", "../shared/data"]
    complete = False
    if store.exists():
        import zarr

        info = zarr.open_group(str(store), mode="r").attrs.get("layercal") or {}
        complete = bool(info.get("status", {}).get("complete"))  # type: ignore[union-attr]
        if not complete:
            cmd.append("--resume")
    if complete:
        print(f"store {store} is complete; reusing it (delete it to extract again)")
    else:
        print("$ layercal extract " + " ".join(cmd), flush=True)
        rc = layercal(["extract", *cmd])
        if rc != 0:
            return rc
    print(f"\n$ layercal summary {store}", flush=True)
    rc = layercal(["summary", str(store)])
    if rc != 0:
        return rc
    print(f"\n$ layercal analyze {store} --out {args.report}", flush=True)
    rc = layercal(["analyze", str(store), "--out", args.report])
    print(f"\nstore:  {store.resolve()}  (format {fmt.FORMAT_NAME} v{fmt.FORMAT_VERSION})")
    print(f"open it with:  xarray.open_zarr({str(store)!r})")
    print(f"report: {(Path(args.report) / 'report.html').resolve()}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
