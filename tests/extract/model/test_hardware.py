"""``--dtype auto`` chooses by the hardware: the CPU's capability query is replaced to play each
kind of CPU (the model and the extraction are real), the warning for bf16 forced where it is
emulated, the run record."""

from __future__ import annotations

import json

import pytest
import torch
import zarr

from extract.cli import main as extract_main
from extract.model import hardware
from extract.model.hardware import CpuInfo, choose_dtype
from layercal import format as fmt

AVX2 = CpuInfo("AMD EPYC (test)", "AVX2", avx512_bf16=False, amx=False)
AVX512_NO_BF16 = CpuInfo("Intel Skylake (test)", "AVX512", avx512_bf16=False, amx=False)
AVX512_BF16 = CpuInfo("AMD EPYC Genoa (test)", "AVX512", avx512_bf16=True, amx=False)
AMX = CpuInfo("Intel Sapphire Rapids (test)", "AVX512", avx512_bf16=True, amx=True)
# an AVX-512 BF16 CPU whose dispatch was lowered (ATEN_CPU_CAPABILITY=avx2): torch emulates bf16
LOWERED = CpuInfo("AMD EPYC Genoa (test)", "AVX2", avx512_bf16=True, amx=False)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (AVX2, "float32"),
        (AVX512_NO_BF16, "float32"),
        (LOWERED, "float32"),
        (AVX512_BF16, "bfloat16"),
        (AMX, "bfloat16"),
    ],
)
def test_auto_on_cpu_is_bf16_only_where_native(info, expected):
    choice = choose_dtype("auto", "cpu", info)
    assert choice.dtype == expected
    assert choice.torch_dtype == getattr(torch, expected)
    assert info.capability in choice.reason and info.model in choice.reason
    assert ("no native bf16" in choice.reason) == (expected == "float32")
    assert choice.warning is None
    assert choice.cpu == {
        "model": info.model,
        "capability": info.capability,
        "avx512_bf16": info.avx512_bf16,
        "amx": info.amx,
    }


def test_an_explicit_dtype_is_kept_and_warned_only_for_emulated_bf16(tmp_path):
    for info in (AVX512_BF16, AMX):
        assert choose_dtype("bfloat16", "cpu", info, tmp_path).warning is None
    for dtype in ("float32", "float16"):
        assert choose_dtype(dtype, "cpu", AVX2, tmp_path).warning is None
    assert not (tmp_path / "dtype-probe.json").exists()  # no probe where none is needed
    forced = choose_dtype("bfloat16", "cpu", AVX2, tmp_path)
    assert forced.dtype == "bfloat16" and forced.reason == "asked for (--dtype)"
    assert forced.warning is not None
    assert "without native bf16" in forced.warning and "AVX2" in forced.warning
    assert "--dtype auto would choose float32" in forced.warning
    # the measured slowdown is cached per machine (CPU model, capability, torch version)
    cache = json.loads((tmp_path / "dtype-probe.json").read_text())
    (key,) = cache
    assert key == f"{AVX2.model}|AVX2|{torch.__version__}"
    assert f"{cache[key]:.2f}x float32's speed" in forced.warning
    cache[key] = 0.29  # a cached figure is read back, not measured again
    (tmp_path / "dtype-probe.json").write_text(json.dumps(cache))
    assert "0.29x float32's speed" in str(choose_dtype("bfloat16", "cpu", AVX2, tmp_path).warning)


def test_auto_off_the_cpu():
    assert choose_dtype("auto", "mps").dtype == "float32"
    assert choose_dtype("float16", "mps").dtype == "float16"


def test_the_real_cpu_is_described():
    info = hardware.cpu_info()
    assert info.capability == torch.backends.cpu.get_cpu_capability()
    assert info.model and info.capability in info.describe()


@pytest.mark.parametrize(("info", "expected"), [(AVX2, "float32"), (AVX512_BF16, "bfloat16")])
def test_extract_prints_and_records_the_choice(
    info, expected, tiny_llama_dir, data_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(hardware, "cpu_info", lambda: info)
    out = tmp_path / "s.zarr"
    argv = ["--model", str(tiny_llama_dir), "--dataset", "mmlu", "--subjects", "formal_logic"]
    argv += ["--limit", "8", "--data-dir", str(data_dir), "--out", str(out), "--device", "cpu"]
    assert extract_main([*argv, "--dtype", "auto", "--batch-size", "8"]) == 0
    err = capsys.readouterr().err
    assert f"dtype: {expected} (" in err and info.capability in err
    attrs = fmt.attrs(zarr.open_group(str(out), mode="r"))
    assert attrs["identity"]["dtype"] == expected
    assert attrs["provenance"]["model"]["dtype_requested"] == "auto"
    (run,) = attrs["runs"]
    assert run["dtype"] == "auto"
    assert run["dtype_choice"]["dtype"] == expected
    assert run["dtype_choice"]["cpu"]["capability"] == info.capability


def test_resuming_on_a_machine_that_picks_another_dtype_says_what_to_pass(
    tiny_llama_dir, data_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "s.zarr"
    argv = ["--model", str(tiny_llama_dir), "--dataset", "mmlu", "--subjects", "formal_logic"]
    argv += ["--limit", "8", "--data-dir", str(data_dir), "--out", str(out), "--device", "cpu"]
    argv += ["--batch-size", "8", "--no-progress"]
    monkeypatch.setattr(hardware, "cpu_info", lambda: AVX512_BF16)
    assert extract_main(argv) == 0
    before = (out / "zarr.json").read_bytes()
    monkeypatch.setattr(hardware, "cpu_info", lambda: AVX2)
    capsys.readouterr()
    assert extract_main([*argv, "--resume"]) != 0
    err = capsys.readouterr().err
    assert "pass --dtype bfloat16 to resume" in err
    assert (out / "zarr.json").read_bytes() == before  # the store is left as it was
