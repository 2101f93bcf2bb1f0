"""torch.compile of the trainable path (model.compile_mode), and the one LAVIS/transformers probe it must
answer first.

Small-batch BLIP-2 steps on a GPU are bound by kernel launches and Python overhead, not arithmetic; compiled
(fused kernels; with mode="reduce-overhead", CUDA graphs) they launch far fewer kernels.
"""


def answer_tpu_probe_once():
    """Let torch.compile trace the Q-Former in one graph.

    Its forward reads `self.dtype` (Qformer.py:799), and transformers 4.26's get_parameter_dtype then calls
    is_torch_tpu_available(), whose importlib.util.find_spec is untraceable: with torch 2.11 every call was a
    graph break. The answer cannot change within a process, so modeling_utils gets a function returning it.
    """
    import transformers.modeling_utils as modeling_utils

    probe = modeling_utils.is_torch_tpu_available
    if getattr(probe, "answered_once", False):
        return
    answer = probe()

    def is_torch_tpu_available(check_device=True):
        return answer

    is_torch_tpu_available.answered_once = True
    modeling_utils.is_torch_tpu_available = is_torch_tpu_available


def compile_trainable_path(model, **options):
    """torch.compile(**options) the Q-Former and each OPT decoder layer of `model`, in place (state-dict keys
    unchanged); returns the multiple that training texts are padded to.

    OPT is compiled layer by layer because LAVIS's decoder loop draws a Python random number for LayerDrop
    (modeling_opt.py:741-742), a data-dependent branch that would split one whole-model graph anyway; the
    layers share one compiled graph. Training texts are padded to a multiple of 8 tokens, so that only a few
    shapes are compiled (the padding is masked: losses do not change).
    """
    answer_tpu_probe_once()
    model.Qformer.bert.compile(**options)
    for layer in model.opt_model.model.decoder.layers:
        layer.compile(**options)
    return 8
