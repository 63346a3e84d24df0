"""`make demo-smollm2` (the quick preset) end to end on a few questions; the presets' choices."""

from __future__ import annotations

from layercal.demo import PRESETS, main


def test_presets():
    assert PRESETS["qwen"].model == "qwen2.5-coder-1.5b" and PRESETS["qwen"].dtype == "bfloat16"
    assert PRESETS["smollm2"].select == ("--category", "humanities")


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
