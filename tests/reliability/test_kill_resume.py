"""kill -9 at random points of an extraction, then --resume: the same bytes as one clean run.

Each seed draws a kill point: ``compute`` waits until ``k`` blocks are marked written and then
up to a second more (the kill lands in a forward pass, or while the writer thread compresses
and writes the previous block); ``write`` kills as soon as block ``k``'s ``resid`` shard is on
disk, usually before its other objects and its ``written`` mark. Seeds 0, 1 and 4 give
write@1, compute@0 and compute@1. The dead writer's block claims are taken over with a note.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from layercal import format as fmt

from .helpers import (
    N_BLOCKS,
    assert_same_arrays,
    blocks_written,
    command,
    extract_here,
    start,
    wait_for_blocks,
)


def _wait_for_object(path, proc, timeout: float = 300) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.001)
    return False


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_sigkill_at_random_point_then_resume_is_byte_identical(
    seed, tmp_path, tiny_llama_dir, data_dir, reference, capsys
):
    rng = random.Random(seed)
    mode, k, u = rng.choice(["compute", "write"]), rng.randrange(N_BLOCKS - 1), rng.random()
    out = tmp_path / "killed.zarr"
    proc = start(command(tiny_llama_dir, out, data_dir))
    if mode == "write":
        reached = _wait_for_object(out / "resid" / "c" / str(k) / "0" / "0", proc)
    else:
        reached = wait_for_blocks(out, proc, k)
        time.sleep(u)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reached, f"the writer ended before the kill point: {proc.stderr.read()[-2000:]}"
    done = blocks_written(out)
    assert done is not None and done < N_BLOCKS, "killed too late: the run had finished"
    claims = fmt.claims_dir(out)
    left = sorted(int(p.stem.split("-")[1]) for p in claims.glob("block-*.json"))
    assert extract_here(tiny_llama_dir, out, data_dir, "--resume") == 0
    err = capsys.readouterr().err
    for b in left:  # claims of unfinished blocks are taken over; of finished ones, cleared
        assert f"took over block {b}" in err or b < done, (b, done, err)
    assert not claims.exists(), list(claims.iterdir())
    assert_same_arrays(out, reference)
    assert not list(out.rglob("*.partial"))
