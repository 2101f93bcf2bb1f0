"""Answers and captions from blip2_opt_gated: LAVIS's generate / predict_answers interface, with prompts
left-padded (every answer starts right after its prompt, so a batch answers as its samples do alone), OPT's
key/value cache reused (models/cached_opt.py) and no token id the tokenizer cannot decode
(text_inputs.TokenizerIdsOnly)."""

import torch
from transformers import LogitsProcessorList

from lavis_gated.models import text_inputs


class AnswerGeneration:
    """generate and predict_answers for a model with image_inputs, prompt_batch, encode_image, opt_model,
    opt_tokenizer, eos_token_id and frozen_autocast (Blip2OPTGated)."""

    @torch.no_grad()
    def generate(
        self,
        samples,
        use_nucleus_sampling=False,
        num_beams=5,
        max_length=30,
        min_length=1,
        top_p=0.9,
        repetition_penalty=1.0,
        length_penalty=1.0,
        num_captions=1,
        temperature=1,
    ):
        """Answers/captions for samples["image"] (B, 3, H, W) (or its precomputed frozen features): an answer
        for a row with a question, a caption (after model.caption_prompt) for a row without one
        (text_inputs.row_texts); list of B * num_captions str. Prompts are left-padded, so each answer
        follows its prompt."""
        frozen = self.image_inputs(samples)
        device = frozen["vit_features"].device
        (input_ids, prompt_mask), _ = self.prompt_batch(samples)
        input_ids, prompt_mask = input_ids.to(device), prompt_mask.to(device)
        inputs_opt, _ = self.encode_image(frozen, input_ids, prompt_mask)
        attention_mask = torch.cat(
            [torch.ones(inputs_opt.shape[:2], dtype=torch.long, device=device), prompt_mask], 1
        )
        expand = num_captions if use_nucleus_sampling else num_beams
        with self.frozen_autocast(self.opt_precision):
            outputs = self.opt_model.generate(
                input_ids=input_ids,
                query_embeds=inputs_opt.repeat_interleave(expand, dim=0),
                attention_mask=attention_mask,
                do_sample=use_nucleus_sampling,
                top_p=top_p,
                temperature=temperature,
                num_beams=1 if use_nucleus_sampling else num_beams,
                max_new_tokens=max_length,
                min_length=min_length,
                eos_token_id=self.eos_token_id,
                pad_token_id=self.opt_tokenizer.pad_token_id,
                repetition_penalty=repetition_penalty,
                length_penalty=length_penalty,
                num_return_sequences=num_captions,
                logits_processor=LogitsProcessorList([text_inputs.TokenizerIdsOnly(len(self.opt_tokenizer))]),
            )
        texts = self.opt_tokenizer.batch_decode(outputs[:, input_ids.shape[1] :], skip_special_tokens=True)
        return [t.strip() for t in texts]

    def predict_answers(
        self,
        samples,
        num_beams=5,
        inference_method="generate",
        max_len=10,
        min_len=1,
        num_ans_candidates=None,
        answer_list=None,
        prompt="",
        length_penalty=-1,
        **kwargs,
    ):
        """LAVIS's VQA interface: one generated answer per question in samples["text_input"] (a list, or one
        string for a batch of one)."""
        if inference_method != "generate":
            raise NotImplementedError(
                f"inference_method {inference_method!r}: blip2_opt_gated answers by generation"
            )
        if isinstance(samples.get("text_input"), str):
            samples = dict(samples, text_input=[samples["text_input"]])
        if prompt:
            samples = dict(samples, prompt=[prompt.format(q) for q in samples["text_input"]])
        return self.generate(
            samples,
            num_beams=num_beams,
            max_length=max_len,
            min_length=min_len,
            length_penalty=length_penalty,
        )
