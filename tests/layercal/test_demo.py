"""`make demo-smollm2` (the quick preset) end to end on a few questions; the presets' choices."""

from __future__ import annotations

from layercal.demo import DEMO_SUBJECTS, PRESETS, main, select_for


def test_presets():
    """Both presets let the hardware choose the dtype (issue 22: bf16 forced on a CPU without it
    ran at 0.29x fp32's speed); Qwen's sample is 12 questions of each of its ten subjects."""
    qwen = PRESETS["qwen"]
    assert qwen.model == "qwen2.5-coder-1.5b" and qwen.dtype == "auto"
    assert qwen.select == ("--subjects", ",".join(DEMO_SUBJECTS), "--per-subject", "12")
    assert qwen.n == 12 * len(DEMO_SUBJECTS) == 120
    assert PRESETS["smollm2"].select == ("--category", "humanities")
    assert PRESETS["smollm2"].dtype == "auto"
    # DEMO_N: the per-subject cap grows with the sample, never below the preset's
    assert select_for(qwen, None) == qwen.select and select_for(qwen, 4) == qwen.select
    assert select_for(qwen, 400)[-1] == "40" and select_for(qwen, 121)[-1] == "13"
    assert select_for(PRESETS["smollm2"], 400) == ("--category", "humanities")


def test_smollm2_demo_writes_store_and_report(tmp_path, data_dir, smollm2, capsys):
    store, report = tmp_path / "demo.zarr", tmp_path / "report"
    argv = ["--preset", "smollm2", "--n", "8", "--store", str(store), "--report", str(report)]
    assert main(argv) == 0
    assert (report / "report.html").is_file()
    out = capsys.readouterr().out
    assert "$ layercal summary" in out and "demo took" in out
    explorer = report / "explorer.html"  # written before the report, which links it
    assert f"explorer: {explorer.resolve()}" in out and explorer.is_file()
    assert 'href="explorer.html"' in (report / "report.html").read_text(encoding="utf-8")
    assert "$ layercal analyze" in out and "(from cache)" in out.split("$ layercal analyze")[1]
    assert main(argv) == 0  # a rerun reuses the complete store
    assert "is complete; reusing it" in capsys.readouterr().out
