"""Mean K/V modulation strength per style: which Q-Former heads does each style move?

Evaluation records carry the model's per-sample modulation strength (cross-attention layer x parameter
x head, see Blip2OPTGated.modulation_strength); this averages it per style label into the JSON that the
modulation heatmap is drawn from.
"""

from collections import defaultdict

import numpy as np

from lavis_gated.datasets.style_vocabulary import normalise_style

NO_STYLE_LABEL = "(no style)"
PARAMETER_NAMES = {
    "film": ["|gamma_k| (K scale)", "|gamma_v| (V scale)", "|beta_v| (V shift)"],
    "gate": ["|tanh g_k| (K gate)", "|tanh g_v| (V gate)"],
}


def summarise_modulation(records, gating_type, qformer_layers):
    """records: dicts with "style" and "modulation" (L, P, H) nested lists -> a JSON-ready dict

    {"gating_type", "parameters": P names, "qformer_layers": L Q-Former layer indices,
     "styles": {style: {"count": n, "mean": (L, P, H) nested lists}}}, styles sorted by name.
    """
    groups = defaultdict(list)
    for r in records:
        groups[normalise_style(r["style"]) or NO_STYLE_LABEL].append(r["modulation"])
    return {
        "gating_type": gating_type,
        "parameters": PARAMETER_NAMES[gating_type],
        "qformer_layers": list(qformer_layers),
        "styles": {
            style: {"count": len(values), "mean": np.asarray(values, dtype=np.float64).mean(0).tolist()}
            for style, values in sorted(groups.items())
        },
    }
