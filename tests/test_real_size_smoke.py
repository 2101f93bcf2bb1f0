"""benchmarks/real_size_smoke.py at the tiny size: the run it documents, and the report it prints; at the real
size (about 18 GiB in fp32, and minutes: run by hand, not by tests) only what it decides before building: the
precision for the CPU, the memory it needs, and its refusal when there is less."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lavis_gated.models import precision

REPO = Path(__file__).resolve().parent.parent
GiB = 2**30


def test_smoke_run_trains_generates_and_reports_each_part():
    command = [sys.executable, "benchmarks/real_size_smoke.py", "--model-type", "tiny", "--threads", "1"]
    result = subprocess.run(
        command,
        cwd=REPO,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # auto: bf16 where this CPU computes it natively, fp32 otherwise; said beside each figure
    assert report["precision_requested"] == "auto" and report["threads"] == 1
    assert report["precision"] == report["vit_precision"] == ("bf16" if report["native_bf16"] else "fp32")
    assert report["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert report["precision_reason"].startswith(f"auto: {report['precision']}, as this CPU ")
    tag = f"[{report['precision']}, {report['cpu_capability']}]"
    for figure in ("build_s", "step_s", "generate_s", "predict_answers_s", "peak_rss"):
        assert any(
            line.startswith(f"{figure}: ") and line.endswith(tag) for line in result.stdout.splitlines()
        )
    assert "memory: no measured need for tiny" in result.stdout
    assert report["build_s"] >= 0 and report["step_s"] > 0 and report["generate_s"] > 0
    assert report["peak_rss_bytes"] > 0
    # the style terms' cost, timed in the same process: LM only, the probe at its share, on every row
    terms = report["style_terms"]
    assert set(terms["step_s"]) == {"lm_only", "probe_default_share", "probe_every_labelled_row"}
    assert all(t > 0 for t in terms["step_s"].values()) and terms["ratio_to_lm_only"]["lm_only"] == 1.0
    # per round: every labelled row (the batch of 2), or each with chance 0.125 (the round: the draw's epoch)
    probed = terms["probed_rows"]
    rounds = len(probed["probe_every_labelled_row"])
    assert rounds >= 1 and probed["probe_every_labelled_row"] == [2] * rounds
    assert len(probed["probe_default_share"]) == rounds and all(
        0 <= n <= 2 for n in probed["probe_default_share"]
    )
    assert len(report["generated"]) == 1 and len(report["answers"]) == 1
    params = report["params"]
    assert report["total_params"] == sum(p["total"] for p in params.values())
    assert report["trainable_params"] == sum(p["trainable"] for p in params.values())
    assert all(params[part]["trainable"] == 0 for part in ("visual_encoder", "opt_model", "style_encoder"))
    trained = ("Qformer", "query_tokens", "opt_proj", "prompt_mapper", "kv_modulation", "style_head")
    assert all(params[part]["trainable"] == params[part]["total"] > 0 for part in trained)
    assert f"params opt_model: {params['opt_model']['total']:,} total, 0 trainable" in result.stdout


# ---- the real size, up to the build ------------------------------------------------------------------------

AVX2_EPYC = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse avx avx2 fma\n"
NATIVE_BF16 = "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16\n"


class Built(Exception):
    """Raised in place of building the real-size model."""


@pytest.fixture
def smoke(monkeypatch, tmp_path):
    """smoke(cpuinfo, capability, available GiB, held GiB): the smoke module on that CPU and memory; its
    run() raises Built instead of building."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "real_size_smoke", REPO / "benchmarks" / "real_size_smoke.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(precision, "_announced", set())

    def on(cpuinfo, capability, available_gib, held_gib=0.7):
        (tmp_path / "cpuinfo").write_text(cpuinfo)
        monkeypatch.setattr(precision, "CPUINFO", str(tmp_path / "cpuinfo"))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        memory = {"MemAvailable": available_gib * GiB, "VmRSS": held_gib * GiB}
        monkeypatch.setattr(module, "meminfo_bytes", lambda field, path=None: memory[field])

        def run(args, root):
            raise Built(args)

        monkeypatch.setattr(module, "run", run)
        return module

    return on


def test_refuses_before_building_when_memory_is_short_for_fp32(smoke, capsys):
    module = smoke(AVX2_EPYC, "AVX2", available_gib=12.0)
    assert module.main([]) == 2  # never built: run() would have raised
    out, err = capsys.readouterr()
    assert "cpu: AMD EPYC 7B12, torch CPU capability AVX2, no avx512_bf16 or amx_bf16 flag" in out
    assert "precision: fp32 (auto: fp32, as this CPU has no native bf16 (AMD EPYC 7B12" in out
    assert (
        "memory: pretrain_opt2.7b in fp32 needs about 20 GiB at its peak (19.2 GiB peak RSS measured); "
        "available 12.7 GiB (MemAvailable 12.0 + this process 0.7)" in out
    )
    assert err.startswith("real_size_smoke: not enough free memory to run: pretrain_opt2.7b in fp32 needs")
    assert "--model-type tiny" in err and "--no-memory-check" in err
    assert "--precision bf16" not in err, "bf16 is no way out on a CPU that emulates it"


def test_runs_when_memory_suffices_or_when_told_to(smoke):
    module = smoke(AVX2_EPYC, "AVX2", available_gib=19.4)  # + 0.7 held: 20.1 GiB
    with pytest.raises(Built):
        module.main(["--threads", "1"])
    module = smoke(AVX2_EPYC, "AVX2", available_gib=4.0)
    with pytest.raises(Built):
        module.main(["--no-memory-check"])


def test_native_bf16_needs_about_half(smoke, capsys):
    module = smoke(NATIVE_BF16, "AVX512", available_gib=12.0)
    with pytest.raises(Built) as built:
        module.main([])
    assert built.value.args[0].precision == "auto"  # the model decides with the same function
    out = capsys.readouterr().out
    assert "precision: bf16 (auto: bf16, as this CPU computes bf16 natively" in out
    assert "memory: pretrain_opt2.7b in bf16 needs about 11 GiB" in out
    module = smoke(NATIVE_BF16, "AVX512", available_gib=8.0)
    assert module.main(["--precision", "fp32"]) == 2
    assert "or --precision bf16, which this CPU computes natively" in capsys.readouterr().err


def test_explicit_bf16_without_native_support_warns_and_runs(smoke, capsys):
    module = smoke(AVX2_EPYC, "AVX2", available_gib=12.0)
    with pytest.warns(precision.SlowPrecisionWarning, match=r"--precision is bf16 .* many times slower"):
        with pytest.raises(Built):
            module.main(["--precision", "bf16"])
    assert "memory: pretrain_opt2.7b in bf16 needs about 11 GiB" in capsys.readouterr().out


def test_precision_flag_takes_the_config_values_and_defaults_to_auto(smoke, capsys):
    module = smoke(AVX2_EPYC, "AVX2", available_gib=64.0)
    assert module.parse_args([]).precision == "auto"
    assert module.parse_args(["--precision", "fp16"]).precision == "fp16"
    with pytest.raises(SystemExit):
        module.parse_args(["--precision", "bf32"])
    err = capsys.readouterr().err
    assert "argument --precision: invalid choice: 'bf32'" in err
    assert all(name in err.partition("choose from")[2] for name in ("fp16", "bf16", "fp32", "auto"))
