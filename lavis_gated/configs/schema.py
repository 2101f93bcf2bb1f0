"""The config machinery: a dataclass per block, whose fields carry each key's one default and help.

`from_block` validates a YAML block (a dict or OmegaConf node) against such a dataclass: an unknown key,
misspelt or not, is an error naming the key, its block and the closest valid name (`run.save_lsat` would
otherwise run silently without writing checkpoint_last.pth); a value outside a field's `choices` names
them. Nested dataclasses validate their own sub-blocks (model.gating, datasets.artquest.fields, ...).
"""

import dataclasses
import difflib
from collections.abc import Iterable
from typing import Any, Optional


class ConfigKeyError(KeyError):
    """An unknown key in a config block."""

    def __str__(self):  # KeyError would print the message with quotes around it
        return str(self.args[0])


def setting(default, help, choices=None):
    """A dataclass field with its default, a one-line help and optionally the allowed values."""
    metadata = {"help": help, "choices": tuple(choices) if choices else None}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def block(cls, help):
    """A nested block (another config dataclass) as a field, defaulting to that block's defaults."""
    return dataclasses.field(default_factory=cls, metadata={"help": help, "choices": None})


def plain(value):
    """An OmegaConf node as plain Python containers; other values unchanged."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:
        pass
    return value


def check_keys(given: Iterable[str], valid: Iterable[str], where: str):
    """Raise ConfigKeyError for the first key of `given` not in `valid`, naming the closest valid one."""
    valid = sorted(valid)
    for key in given:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.6)
            hint = f"did you mean {where}.{close[0]}?" if close else f"valid keys: {', '.join(valid)}"
            raise ConfigKeyError(f"unknown key {where}.{key} ({hint})")


def from_block(cls, given: Optional[dict[str, Any]], where: str, ignore: Iterable[str] = ()):
    """An instance of config dataclass `cls` from YAML block `given` (None = all defaults), checked.

    Keys in `ignore` are accepted and left out (e.g. LAVIS's own keys of a block).
    """
    given = plain(given) or {}
    if not isinstance(given, dict):
        raise ValueError(f"{where} must be a mapping of keys to values, got {given!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(given, set(fields) | set(ignore), where)
    values = {}
    for name, value in given.items():
        if name not in fields:
            continue
        field = fields[name]
        nested = _nested_class(cls, field)
        if nested is not None:
            value = from_block(nested, value, f"{where}.{name}")
        elif field.metadata.get("choices") and value not in field.metadata["choices"]:
            raise ValueError(
                f"{where}.{name} is {value!r}; it must be one of {list(field.metadata['choices'])}"
            )
        values[name] = value
    return cls(**values)


def _nested_class(cls, field):
    """The config dataclass of a nested block field, else None."""
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    return type(default) if dataclasses.is_dataclass(default) else None


def as_dict(config):
    """A config dataclass (nested ones too) as plain dicts, e.g. to store in a checkpoint."""
    return dataclasses.asdict(config)


def rows(cls, prefix=""):
    """(key, default, help) of every field, nested blocks flattened as block.key: the reference tables."""
    out = []
    for field in dataclasses.fields(cls):
        nested = _nested_class(cls, field)
        if nested is not None:
            out += rows(nested, f"{prefix}{field.name}.")
            continue
        default = (
            field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        )
        help_text = field.metadata.get("help", "")
        if field.metadata.get("choices"):
            help_text += f" One of: {', '.join(map(str, field.metadata['choices']))}."
        out.append((prefix + field.name, default, help_text))
    return out
