"""Optional LoRA on the Q-Former's cross-attention key/value projections, through peft.

peft renames an adapted layer's weights (`key.weight` -> `key.base_layer.weight`); a load-state-dict
pre-hook maps plain BLIP-2 keys onto that layout so published checkpoints still load.
"""

import re

CROSS_ATTENTION_KV = r".*crossattention\.self\.(key|value)"


def add_cross_attention_lora(qformer, rank=8, alpha=16, dropout=0.05):
    """Inject LoRA adapters into `qformer` in place; returns the adapted module names."""
    from peft import LoraConfig, inject_adapter_in_model

    trainable = {name: p.requires_grad for name, p in qformer.named_parameters()}
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=CROSS_ATTENTION_KV, bias="none"
    )
    inject_adapter_in_model(config, qformer)
    # peft freezes every non-LoRA parameter; keep the Q-Former's own trainability as configured.
    for name, p in qformer.named_parameters():
        plain = name.replace(".base_layer.", ".")
        if plain in trainable:
            p.requires_grad = trainable[plain]
    return [name for name, _ in qformer.named_modules() if re.fullmatch(CROSS_ATTENTION_KV, name)]


def remap_plain_kv_keys(state_dict, prefix, own_keys):
    """In place: `...crossattention.self.key.weight` -> `...key.base_layer.weight` where the model has
    LoRA."""
    for key in list(state_dict):
        match = re.fullmatch(r"(.*crossattention\.self\.(?:key|value))\.(weight|bias)", key)
        if match and key not in own_keys:
            adapted = f"{match.group(1)}.base_layer.{match.group(2)}"
            if adapted in own_keys:
                state_dict[adapted] = state_dict.pop(key)
