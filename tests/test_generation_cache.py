"""Generation reuses the OPT's key/value cache: after the first step the decoder sees one new token per beam.

LAVIS 1.0.2's OPT reads the cache under a name transformers 4.26 no longer passes, so without cached_opt every
generated token recomputed the whole sequence (199 s for 30 tokens with 5 beams at real size on CPU)."""

import copy

import pytest
from helpers.tiny_model import batch, build_tiny
from lavis.models.blip2_models.modeling_opt import OPTForCausalLM as LavisOPTForCausalLM


def decoder_inputs(model, run):
    """(batch rows, new tokens, cache given) of each decoder call inside run(), and run()'s result."""
    calls = []

    def record(module, args, kwargs):
        calls.append((*kwargs["input_ids"].shape, kwargs.get("past_key_values") is not None))

    handle = model.opt_model.model.decoder.register_forward_pre_hook(record, with_kwargs=True)
    try:
        return calls, run()
    finally:
        handle.remove()


@pytest.mark.parametrize("num_beams", [1, 3])
def test_generation_feeds_one_token_per_step_with_the_cache(num_beams):
    model = build_tiny().eval()
    samples = batch(2)
    calls, texts = decoder_inputs(model, lambda: model.generate(samples, num_beams=num_beams, max_length=4))
    rows = 2 * num_beams
    first, later = calls[0], calls[1:]
    assert first[0] == rows and first[1] > 1 and not first[2], "first step: the whole prompt, no cache"
    assert later and all(call == (rows, 1, True) for call in later), calls
    uncached = copy.deepcopy(model)
    uncached.opt_model.__class__ = LavisOPTForCausalLM  # LAVIS's own: the cache never reaches the model
    calls, uncached_texts = decoder_inputs(
        uncached, lambda: uncached.generate(samples, num_beams=num_beams, max_length=4)
    )
    assert all(not cached for _, _, cached in calls) and calls[-1][1] > calls[0][1], "LAVIS recomputes all"
    assert texts == uncached_texts
