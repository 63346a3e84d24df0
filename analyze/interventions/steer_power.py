"""What a steering test could have detected: the minimum detectable effect, and the verdicts.

Every change ``d_M`` in a steering table comes with a paired 95% percentile-bootstrap interval
[lo, hi]. Its standard error is read off the interval, SE = (hi − lo) / (2 · 1.96), and the
**minimum detectable effect at 80% power** is

    MDE = (z_0.975 + z_0.80) · SE = (1.960 + 0.842) · SE ≈ 0.715 · (hi − lo),

the smallest true change that a two-sided test at the 5% level (the interval excluding 0) finds
with probability 0.8, in the normal approximation of the paired difference with that SE. For a
mean metric (accuracy, Brier, NLL) SE ≈ sd(per-example change) / √n, so the MDE shrinks as 1/√n.

A method whose chosen parameter is neutral (α = 0, β = 1) equals *none* and has no interval; its
MDE is that of the nearest non-neutral value of its grid on the same examples (``mde_param``),
the smallest step the method could have taken.

Verdict of an endpoint (``ENDPOINTS``; lower is better except accuracy): "improved" when the
interval excludes 0 on the good side, "worse" on the bad side, else "no effect", which the
reports always print beside the MDE.
"""

from __future__ import annotations

import math
from typing import Any

Z_TEST = 1.959963984540054  # the normal 0.975 quantile: a two-sided test at 5%
Z_POWER = 0.8416212335729143  # the normal 0.80 quantile: 80% power
MDE_FACTOR = (Z_TEST + Z_POWER) / (2 * Z_TEST)  # MDE per unit of interval width
# endpoint -> +1 when larger is better, -1 when smaller is
ENDPOINTS = {"nll": -1, "brier": -1, "ece": -1, "accuracy": +1}


def mde(lo: float, hi: float) -> float:
    """MDE at 80% power of a change whose 95% interval is [lo, hi] (nan without one)."""
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return float("nan")
    return MDE_FACTOR * (hi - lo)


def verdict(row: dict[str, Any], metric: str, prefix: str = "d_") -> str:
    """ "improved", "worse" or "no effect" for ``metric``'s change in a table row."""
    lo, hi = row.get(f"{prefix}{metric}_lo"), row.get(f"{prefix}{metric}_hi")
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "no effect"
    good = ENDPOINTS.get(metric, -1)
    if (good < 0 and hi < 0) or (good > 0 and lo > 0):
        return "improved"
    if (good < 0 and lo > 0) or (good > 0 and hi < 0):
        return "worse"
    return "no effect"


def verdict_text(row: dict[str, Any], metric: str, prefix: str = "d_", digits: int = 3) -> str:
    """The verdict with its evidence: "improved (−0.012 [−0.020, −0.004])", or "no effect
    (+0.001 [−0.006, +0.008]; MDE 0.010)"; "unchanged" when the change is 0 on every
    resample (no example moved: e.g. accuracy under temperature scaling, or a method that
    chose its neutral value), with the MDE of its nearest grid value where there is one."""
    v = verdict(row, metric, prefix)
    d, lo, hi = (row.get(f"{prefix}{metric}{s}") for s in ("", "_lo", "_hi"))
    f = f"{{:+.{digits}f}}"
    if d is None or (isinstance(d, float) and math.isnan(d)):
        return v
    m = row.get(f"{prefix}{metric}_mde")
    power = "" if m is None or math.isnan(m) or m == 0 else f"; MDE {m:.{digits}f}"
    if d == 0 and lo == 0 and hi == 0:
        return f"unchanged{f' ({power[2:]})' if power else ''}"
    ci = (
        f"{f.format(d)}"
        if lo is None or math.isnan(lo)
        else f"{f.format(d)} [{f.format(lo)}, {f.format(hi)}]"
    )
    return f"{v} ({ci})" if v != "no effect" else f"{v} ({ci}{power})"
