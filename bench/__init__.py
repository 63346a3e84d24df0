"""Benchmarks that print figures (never timed assertions), run from the repository root:

    .venv/bin/python -m bench.extract    # layercal extract vs the bare forward, a naive loop, peers
    .venv/bin/python -m bench.analyze    # analyze_store vs one read of resid, full MMLU scale
    .venv/bin/python -m bench.steer      # steering: one extra α online, the offline sweep per α
    .venv/bin/python -m bench.dtype      # bfloat16 vs float32: speed, memory, per-layer deltas
    .venv/bin/python -m bench.lens       # layercal lens fit at Qwen's size: time, peak RSS per kind
    .venv/bin/python -m bench.behaviour  # every command before and after a change, compared

:mod:`bench.harness` is what they share: timing, peak RSS, child processes, the JSON line that
ends each run. Results: docs/benchmarks.md.
"""
