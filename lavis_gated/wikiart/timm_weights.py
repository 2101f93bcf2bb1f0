"""timm weights files read into timm models, with errors that name the file and the keys that differ.

Files are accepted in the layouts StyleEncoder accepts (a plain state dict, or one under `state_dict` or
`model`, `module.` prefixes stripped), so a checkpoint from another trainer works with these commands too.
"""

import timm

from lavis_gated.common.checkpoints import load_checkpoint


def read_state_dict(path):
    """The tensors of a timm weights file, unwrapped and without `module.` prefixes."""
    state = load_checkpoint(path)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state:
        raise ValueError(
            f"{path}: expected a state dict (parameter name -> tensor), got {type(state).__name__}"
        )
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}


def classifier_prefix(model):
    """`classifier.` (EfficientNet), `fc.` (ResNet), ...: the module timm replaces for a new class count."""
    return model.default_cfg.get("classifier", "classifier") + "."


def check_keys(model, state, path):
    """Raise ValueError naming `path` unless `state` has exactly the model's keys and shapes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{path} does not match timm {model.default_cfg.get('architecture')}: "
            f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}, "
            f"wrong shapes {wrong[:5]}"
        )


def load_backbone(model, path):
    """Start `model` from the weights in `path` (e.g. ImageNet) for everything but its classifier, which
    keeps its fresh initialisation for the new classes."""
    head = classifier_prefix(model)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(head)}
    for key, value in model.state_dict().items():
        if key.startswith(head):
            state[key] = value
    check_keys(model, state, path)
    model.load_state_dict(state)


def load_classifier(arch, path, class_names):
    """The timm `arch` with the trained weights of `path`, whose classifier has one row per class name."""
    model = timm.create_model(arch, pretrained=False, num_classes=len(class_names))
    state = read_state_dict(path)
    head = classifier_prefix(model) + "weight"
    if head in state and state[head].shape[0] != len(class_names):
        raise ValueError(
            f"the classifier in {path} has {state[head].shape[0]} rows, "
            f"but {len(class_names)} class names were given"
        )
    check_keys(model, state, path)
    model.load_state_dict(state)
    return model.eval()
