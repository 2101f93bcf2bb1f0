"""The toy-size stand-ins for BLIP-2's downloads that tests build from, and LAVIS's Blip2OPT built from them.

The files (lavis_gated.offline.standins.write_sources) mirror what the real sources provide: a BERT folder
with weights (the Q-Former's `bert-base-uncased`), an OPT folder written by save_pretrained
(`facebook/opt-2.7b`) and an EVA ViT weights file (`eva_vit_g.pth`); a test writes a BLIP-2 checkpoint
({"model": state_dict}, `blip2_pretrained_opt2.7b.pth`) from LAVIS's Blip2OPT when it needs one.
"""

from lavis_gated.offline import standins

PROMPT = "Question: what is shown? Answer:"
IMAGE_SIZE = 32
NUM_QUERY_TOKEN = 8


def make_sources(root):
    """Write the tiny stand-ins, random weights included, under `root`; returns {name: path}."""
    return standins.write_sources("tiny", root, weights=True, image_size=IMAGE_SIZE)


def build_lavis_blip2opt(sources):
    """LAVIS's Blip2OPT class itself at toy size, in fp32 (as load_model_and_preprocess leaves it on CPU)."""
    model = standins.build_lavis_blip2opt(
        sources,
        "eva_tiny",
        seed=14,
        img_size=IMAGE_SIZE,
        vit_precision="fp32",
        num_query_token=NUM_QUERY_TOKEN,
        prompt=PROMPT,
        max_txt_len=32,
    )
    return model.float().eval()


def gated_config(sources, **overrides):
    """The `tiny` model config with every source pointed at the stand-ins (nothing random-initialised)."""
    from lavis.common.registry import registry
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(registry.get_model_class("blip2_opt_gated").default_config_path("tiny")).model
    return OmegaConf.merge(
        cfg,
        {
            "image_size": IMAGE_SIZE,
            "num_query_token": NUM_QUERY_TOKEN,
            "prompt": PROMPT,
            "qformer_bert": sources["bert"],
            "qformer_random_init": False,
            "opt_model": sources["opt"],
            "opt_random_init": False,
            "vit_weights": sources["eva"],
            "style_names": ["cubism", "impressionism", "pop art"],
            **overrides,
        },
    )
