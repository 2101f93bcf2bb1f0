"""LAVIS's OPTForCausalLM with its key/value cache reaching the model during generation.

LAVIS 1.0.2's prepare_inputs_for_generation (modeling_opt.py:1079-1102) takes the cache as `past`, the
name older transformers passed; transformers 4.26 passes `past_key_values` (generation/utils.py:707), which
lands in **kwargs unused. Every generated token then recomputes the whole sequence (query prefix, prompt and
the tokens so far) for every beam: at real size on CPU, 30 tokens with 5 beams took 199 s. Here the cache is
passed under the name LAVIS reads; weights, state-dict keys and outputs are LAVIS's.
"""

from lavis.models.blip2_models.modeling_opt import OPTForCausalLM as LavisOPTForCausalLM


class OPTForCausalLM(LavisOPTForCausalLM):
    def prepare_inputs_for_generation(
        self,
        input_ids=None,
        query_embeds=None,
        past=None,
        attention_mask=None,
        use_cache=None,
        past_key_values=None,
        **kwargs,
    ):
        """After the first step: only the last token, no query prefix, and the cache (LAVIS's method)."""
        return super().prepare_inputs_for_generation(
            input_ids, query_embeds, past or past_key_values, attention_mask, use_cache, **kwargs
        )
