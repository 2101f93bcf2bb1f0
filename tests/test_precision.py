"""The CPU precision decision (models/precision.py) with what torch reports and the CPU's flags mocked: bf16
only where the CPU computes it natively, its choice logged once with its reason, a warning that names the
slowdown when bf16 is asked for anyway; and the model storing and computing its frozen parts as decided."""

import logging

import pytest
import torch
from helpers.tiny_model import batch, build_tiny

from lavis_gated.configs.model_config import model_config
from lavis_gated.configs.schema import ConfigKeyError
from lavis_gated.models import precision

# /proc/cpuinfo's first lines of three CPUs (the flags cut to what matters)
SAPPHIRE_RAPIDS = (
    "model name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16\n"
)
EPYC_AVX2 = "model name\t: AMD EPYC 7B12\nflags\t\t: fpu sse avx avx2 fma\n"
SKYLAKE_AVX512 = "model name\t: Intel(R) Xeon(R) Gold 6148\nflags\t\t: fpu sse avx2 avx512f avx512bw\n"


@pytest.fixture
def cpu(monkeypatch, tmp_path):
    """cpu(cpuinfo text or None, torch capability): this process sees that CPU; no choice announced yet,
    no CUDA."""
    monkeypatch.setattr(precision, "_announced", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def use(cpuinfo, capability):
        path = tmp_path / "cpuinfo"
        if cpuinfo is not None:
            path.write_text(cpuinfo)
        monkeypatch.setattr(precision, "CPUINFO", str(path))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)

    return use


def test_native_bf16_gives_bf16_and_says_why_once(cpu, caplog):
    cpu(SAPPHIRE_RAPIDS, "AVX512")
    with caplog.at_level(logging.INFO):
        choice = precision.cpu_precision("auto", "model.opt_precision")
        again = precision.cpu_precision("auto", "model.opt_precision")
    assert choice.precision == again.precision == "bf16" and not choice.slow
    assert choice.features.bf16_flags == ("avx512_bf16", "amx_bf16")
    logged = [r.getMessage() for r in caplog.records if "CPU precision" in r.getMessage()]
    assert logged == [
        "CPU precision of model.opt_precision: auto: bf16, as this CPU computes bf16 natively "
        "(Intel(R) Xeon(R) Platinum 8480+, torch CPU capability AVX512, avx512_bf16 amx_bf16)"
    ]


@pytest.mark.parametrize(
    "cpuinfo, capability, flags",
    [
        (EPYC_AVX2, "AVX2", "no avx512_bf16 or amx_bf16 flag"),
        (SKYLAKE_AVX512, "AVX512", "no avx512_bf16 or amx_bf16 flag"),  # AVX512 without its bf16 part
        (SAPPHIRE_RAPIDS, "AVX2", "avx512_bf16 amx_bf16"),  # torch not running its AVX512 kernels
        (None, "DEFAULT", "CPU flags unknown (no "),  # e.g. macOS: no /proc/cpuinfo
    ],
    ids=["avx2", "avx512-without-bf16", "torch-avx2-kernels", "no-cpuinfo"],
)
def test_without_native_bf16_auto_gives_fp32(cpu, caplog, cpuinfo, capability, flags):
    cpu(cpuinfo, capability)
    with caplog.at_level(logging.INFO):
        choice = precision.cpu_precision("auto", "model.vit_precision")
    assert choice.precision == "fp32" and not choice.slow
    assert choice.reason.startswith("auto: fp32, as this CPU has no native bf16 (")
    assert f"torch CPU capability {capability}, {flags}" in choice.reason
    assert choice.reason in caplog.text


def test_explicit_bf16_without_native_support_runs_with_a_warning_naming_the_slowdown(cpu):
    cpu(EPYC_AVX2, "AVX2")
    with pytest.warns(precision.SlowPrecisionWarning) as warned:
        choice = precision.cpu_precision("bf16", "model.opt_precision")
    assert choice.precision == "bf16" and choice.slow
    message = str(warned[0].message)
    assert message.startswith("model.opt_precision is bf16 on a CPU without native bf16 (AMD EPYC 7B12")
    assert "many times slower than fp32" in message and "59x backward" in message
    assert "set it to auto or fp32" in message


def test_explicit_bf16_with_native_support_does_not_warn(cpu, recwarn):
    cpu(SAPPHIRE_RAPIDS, "AVX512")
    assert precision.cpu_precision("bf16").precision == "bf16"
    assert not [w for w in recwarn if issubclass(w.category, precision.SlowPrecisionWarning)]


@pytest.mark.parametrize("cpuinfo, capability", [(SAPPHIRE_RAPIDS, "AVX512"), (EPYC_AVX2, "AVX2")])
def test_fp16_and_fp32_compute_in_fp32_on_any_cpu(cpu, cpuinfo, capability):
    cpu(cpuinfo, capability)
    assert precision.cpu_precision("fp16").precision == precision.cpu_precision("fp32").precision == "fp32"


def test_cuda_keeps_lavis_fp16_and_other_devices_their_setting(cpu):
    cpu(EPYC_AVX2, "AVX2")
    assert precision.compute_precision("auto", "cuda") == "fp16"
    assert precision.compute_precision("bf16", "cuda") == "bf16"
    assert precision.compute_precision("fp16", "meta") == "fp16"
    assert precision.compute_precision("auto", "cpu") == "fp32"


def test_auto_is_stored_in_fp16_where_cuda_is_available_else_as_the_cpu_computes(cpu, monkeypatch):
    cpu(SAPPHIRE_RAPIDS, "AVX512")
    assert precision.storage_precision("auto") == "bf16"
    assert precision.storage_precision("fp32") == "fp32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert precision.storage_precision("auto") == "fp16"


def test_precision_values_are_checked_by_the_config():
    assert model_config({"vit_precision": "auto", "opt_precision": "bf16"}).vit_precision == "auto"
    with pytest.raises((ConfigKeyError, ValueError), match=r"model.opt_precision is 'bf17'"):
        model_config({"opt_precision": "bf17"})
    with pytest.raises(ValueError, match="chosen per device"):
        precision.dtype_of("auto")


# ---- the model stores and computes its frozen parts as decided ---------------------------------------------


def computed_dtypes(model):
    """{part: the dtype its first matmul computed in} over one forward."""
    seen = {}
    parts = {
        "vit": model.visual_encoder.blocks[0].mlp.fc1,
        "opt": model.opt_model.model.decoder.layers[0].fc1,
    }

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, output.dtype)

        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in parts.items()]
    try:
        loss = model(batch())["loss"]
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.isfinite(loss)
    return seen


@pytest.mark.parametrize(
    "cpuinfo, capability, dtype",
    [(SAPPHIRE_RAPIDS, "AVX512", torch.bfloat16), (EPYC_AVX2, "AVX2", torch.float32)],
    ids=["native-bf16", "avx2"],
)
def test_auto_model_is_built_and_computes_as_the_cpu_decides(cpu, cpuinfo, capability, dtype):
    cpu(cpuinfo, capability)
    model = build_tiny(vit_precision="auto", opt_precision="auto")
    assert model.config.vit_precision == "auto"  # the setting is kept: another device decides again
    assert model.visual_encoder.blocks[0].mlp.fc1.weight.dtype == dtype
    assert model.opt_model.lm_head.weight.dtype == dtype
    assert model.opt_model.model.decoder.final_layer_norm.weight.dtype == torch.float32
    assert computed_dtypes(model) == {"vit": dtype, "opt": dtype}
    assert (
        model.vit_precision == model.opt_precision == {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
    )


def test_parts_built_for_cuda_or_made_fp32_by_lavis_are_converted_at_first_use_on_cpu(cpu, monkeypatch):
    """auto built where CUDA is available is stored in fp16; on an AVX2 CPU it computes in fp32. A bf16
    model that LAVIS's load_model_and_preprocess turned to fp32 (model.float() on CPU) goes back to bf16 on
    a CPU with native bf16."""
    cpu(EPYC_AVX2, "AVX2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = build_tiny(vit_precision="auto", opt_precision="auto")
    assert model.opt_model.lm_head.weight.dtype == torch.float16
    assert computed_dtypes(model) == {"vit": torch.float32, "opt": torch.float32}
    assert model.opt_model.lm_head.weight.dtype == torch.float32

    cpu(SAPPHIRE_RAPIDS, "AVX512")
    model = build_tiny(vit_precision="bf16", opt_precision="bf16").float()
    assert computed_dtypes(model) == {"vit": torch.bfloat16, "opt": torch.bfloat16}
    assert model.opt_model.lm_head.weight.dtype == torch.bfloat16


@pytest.mark.parametrize(
    "cpuinfo, capability, setting, dtype",
    [
        (SAPPHIRE_RAPIDS, "AVX512", "bf16", torch.bfloat16),
        (EPYC_AVX2, "AVX2", "auto", torch.float32),
    ],
    ids=["bf16-native", "auto-avx2"],
)
def test_predict_and_the_app_load_a_checkpoint_in_the_cpus_precision(
    cpu, tmp_path, cpuinfo, capability, setting, dtype
):
    """DemoModel.load (lavis-gated-predict, the app) goes through LAVIS's load_model_and_preprocess, which
    calls model.float() on CPU; the frozen parts then take the precision the CPU decision gives for the
    checkpoint's setting, before the first question."""
    from lavis_gated.app.inference import DemoModel

    cpu(cpuinfo, capability)
    block = {
        "arch": "blip2_opt_gated",
        "model_type": "tiny",
        "vit_precision": setting,
        "opt_precision": setting,
    }
    model = build_tiny(**block)
    trained = {
        k: v for k, v in model.state_dict().items() if not k.startswith(("visual_encoder.", "opt_model."))
    }
    path = tmp_path / "checkpoint_best.pth"
    torch.save({"model": trained, "config": {"model": block}}, path)

    demo = DemoModel.load(str(path))
    assert demo.model.visual_encoder.blocks[0].mlp.fc1.weight.dtype == dtype
    assert demo.model.opt_model.lm_head.weight.dtype == dtype
    assert demo.model.opt_precision == {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]
