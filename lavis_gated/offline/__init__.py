"""The offline stand-ins: tiny BLIP-2 parts, the tiny OPT tokenizer and the package's tiny assets."""
