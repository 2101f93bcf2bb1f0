"""timm weights files read into timm models, with errors that name the file and the keys that differ.

Files are accepted in the layouts StyleEncoder accepts and checked by the same rule (checkpoint_keys), so a
checkpoint from another trainer works with these commands too.
"""

import timm

from lavis_gated.common.checkpoints import check_state_dict, load_checkpoint, unwrapped_state_dict


def read_state_dict(path):
    """The tensors of a timm weights file, unwrapped and without `module.` prefixes."""
    return unwrapped_state_dict(load_checkpoint(path), path)


def classifier_prefix(model):
    """`classifier.` (EfficientNet), `fc.` (ResNet), ...: the module timm replaces for a new class count."""
    return model.default_cfg.get("classifier", "classifier") + "."


def load_checked(model, state, path):
    """Load `state` into `model` when it has exactly the model's keys and shapes; else the one rule's
    CheckpointMismatchError (a ValueError) naming `path` and the keys."""
    check_state_dict(state, model.state_dict(), path, f"timm {model.default_cfg.get('architecture')}")
    model.load_state_dict(state)


def load_backbone(model, path):
    """Start `model` from the weights in `path` (e.g. ImageNet) for everything but its classifier, which
    keeps its fresh initialisation for the new classes."""
    head = classifier_prefix(model)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(head)}
    for key, value in model.state_dict().items():
        if key.startswith(head):
            state[key] = value
    load_checked(model, state, path)


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
    load_checked(model, state, path)
    return model.eval()
