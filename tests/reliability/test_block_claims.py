"""Two writers on one block: refused with the owner named, never interleaved.

A block is claimed by an atomic create of its record (layercal.format.claim_block) before it is
computed. The holder here is a real process that claims a block through the same function and
keeps it; then extractions on the same store must refuse, and once the holder is killed its
stale claim is taken over with a note.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap

from layercal import format as fmt

from .helpers import REPO, blocks_written, extract_here, snapshot

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from layercal import format as fmt
    store, block, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.005)
    try:
        fmt.claim_block(store, block)
        print("claimed", flush=True)
    except fmt.BlockClaimedError as e:
        print("refused", e, flush=True)
    time.sleep(float(sys.argv[4]))
    """
)


def holder(store, block, go, hold_s=600.0) -> subprocess.Popen[str]:
    """A process that claims ``block`` once ``go`` exists, reports, and keeps the claim."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(store), str(block), str(go), str(hold_s)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_second_writer_is_refused_and_stale_claim_taken_over(
    first_block, tmp_path, tiny_llama_dir, data_dir, capsys
):
    out = first_block
    go = tmp_path / "go"
    go.touch()
    proc = holder(out, 1, go)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert proc.stdout.readline().strip() == "claimed"
        capsys.readouterr()
        before = snapshot(out)
        # a plain --resume expects to be the only writer: refused before touching anything
        assert extract_here(tiny_llama_dir, out, data_dir, "--resume") == 1
        err = capsys.readouterr().err
        assert "block 1" in err and f"pid {proc.pid}" in err and socket.gethostname() in err
        assert "--shard" in err and "Traceback" not in err
        assert snapshot(out) == before
        # a shard that owns block 1 claims it and is refused; block 1 stays unwritten
        assert extract_here(tiny_llama_dir, out, data_dir, "--shard", "1/3") == 1
        err = capsys.readouterr().err
        assert "block 1" in err and f"pid {proc.pid}" in err
        assert blocks_written(out) == 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the owner is gone: its claim is stale and taken over, with a note naming it
    claim, note = fmt.claim_block(out, 1)
    assert note is not None and "took over block 1" in note and f"pid {proc.pid}" in note
    fmt.release_block(claim)
    assert not claim.path.exists()
    fmt.clear_dead_claims(out)
    assert not fmt.claims_dir(out).exists()


def test_racing_claims_have_one_winner(tmp_path):
    """Several processes claim one block at the same moment: exactly one gets it."""
    store = tmp_path / "s.zarr"
    store.mkdir()
    go = tmp_path / "go"
    procs = [holder(store, 7, go, hold_s=0.5) for _ in range(3)]
    for p in procs:  # all imported and waiting for the start signal
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    go.touch()
    lines = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(x.split()[0] for x in lines) == ["claimed", "refused", "refused"], lines
    owner = procs[[x.split()[0] for x in lines].index("claimed")].pid
    assert all(f"pid {owner}" in x for x in lines if x.startswith("refused"))
