"""The config machinery: a dataclass per block, whose fields carry each key's one default and help.

`from_block` validates a YAML block (a dict or OmegaConf node) against such a dataclass: an unknown key,
misspelt or not, is an error naming the key, its block and the closest valid name (`run.save_lsat` would
otherwise run silently without writing checkpoint_last.pth); a value of the wrong type is an error naming
the key, the value and the field's type (`model.gating.per_head=maybe` would otherwise be truthy, and a
string in a float field would fail deep inside torch); a value outside a field's `choices` names them.
Nested dataclasses validate their own sub-blocks (model.gating, datasets.artquest.fields, ...).

The types are OmegaConf's structured-config checks (OmegaConf.structured of the dataclass), which also
convert what is unambiguous ("1e-4" or 1 for a float, "8" for an int). Two things are stricter than
OmegaConf: a boolean is only true or false (OmegaConf also takes 1, "yes", "on", ...), and a boolean is
never text or a number. YAML 1.1, which OmegaConf's loader follows, reads yes/no/on/off as booleans before
any check sees them; `check_boolean_spellings` refuses those spellings in a config file and its --options.
"""

import dataclasses
import difflib
import typing
from collections.abc import Iterable
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

BOOLEAN_WORDS = {"true": True, "false": False}  # any case, as YAML 1.2 spells them


class ConfigKeyError(KeyError):
    """An unknown key in a config block."""

    def __str__(self):  # KeyError would print the message with quotes around it
        return str(self.args[0])


class ConfigTypeError(ValueError):
    """A config value of the wrong type (or a boolean not spelt true/false)."""


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
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
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
    """An instance of config dataclass `cls` from YAML block `given` (None = all defaults), checked: keys,
    then types (values converted to the field's type), then choices.

    Keys in `ignore` are accepted and left out (e.g. LAVIS's own keys of a block).
    """
    given = plain(given) or {}
    if not isinstance(given, dict):
        raise ValueError(f"{where} must be a mapping of keys to values, got {given!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    check_keys(given, set(fields) | set(ignore), where)
    values, blocks = {}, {}
    for name, value in given.items():
        if name not in fields:
            continue
        nested = _nested_class(cls, fields[name])
        if nested is not None:
            blocks[name] = from_block(nested, value, f"{where}.{name}")
        else:
            values[name] = _strict_boolean(fields[name], value, f"{where}.{name}")
    values = _typed(cls, values, fields, where)
    for name, value in values.items():
        choices = fields[name].metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"{where}.{name} is {value!r}; it must be one of {list(choices)}")
    return cls(**values, **blocks)


def _typed(cls, values, fields, where):
    """`values` (the block's plain fields) converted to their fields' types by OmegaConf's structured
    config of `cls`; a value it cannot convert is a ConfigTypeError naming key, value and type."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), values)
    except ValidationError as err:
        name = str(err.full_key).split(".")[0].split("[")[0]  # the field, also for a list item's error
        raise ConfigTypeError(
            f"{where}.{name} is {values.get(name)!r}; expected {type_name(fields[name].type)}"
        ) from None
    return {name: plain(merged[name]) for name in values}


def _strict_boolean(field, value, key):
    """`value`, with a boolean field's "true"/"false" text as a bool; a ConfigTypeError for any other
    value of a boolean field (1, "yes", "maybe"), and for a boolean given to a field of another type."""
    if _bare_type(field.type) is not bool:
        if isinstance(value, bool):
            raise ConfigTypeError(f"{key} is {value!r}; expected {type_name(field.type)}")
        return value
    if value is None or isinstance(value, bool):
        return value  # None: OmegaConf refuses it unless the field is Optional
    if isinstance(value, str) and value.strip().lower() in BOOLEAN_WORDS:
        return BOOLEAN_WORDS[value.strip().lower()]
    raise ConfigTypeError(f"{key} is {value!r}; expected {type_name(field.type)}")


def _bare_type(annotation):
    """X of Optional[X]; the annotation itself otherwise."""
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(arguments) == 1:
        return arguments[0]
    return annotation


def type_name(annotation):
    """How an error names a field's type: 'a number', 'a list of str or null', 'true or false'."""
    bare = _bare_type(annotation)
    if bare is bool:
        name = "true or false"
    elif typing.get_origin(bare) is list:
        name = f"a list of {' '.join(a.__name__ for a in typing.get_args(bare)) or 'values'}"
    else:
        name = {int: "an integer", float: "a number", str: "text"}.get(
            bare, getattr(bare, "__name__", str(bare))
        )
    return f"{name} or null" if bare is not annotation else name


def check_boolean_spellings(cfg_path, options=()):
    """Refuse YAML 1.1's other booleans (yes, no, on, off in any case) in a config file and in its --options:
    OmegaConf's loader turns them into true/false before any type check sees them, so `per_head: yes` would
    pass and `prompt: no` would become "False". Raises ConfigTypeError naming the file and line, or the
    option. `options` are key=value pairs (or LAVIS's other form, keys and values alternating)."""
    with open(cfg_path, encoding="utf-8") as handle:
        found = next(_boolean_nodes(_composed(handle.read())), None)
    if found:
        key, node = found
        raise ConfigTypeError(
            f"{cfg_path}, line {node.start_mark.line + 1}: {key} is spelt {node.value!r}; write true "
            f"or false for a boolean, or quote it ('{node.value}') for text"
        )
    options = list(options or ())
    if options and "=" not in options[0]:  # as LAVIS's Config._convert_to_dot_list reads them
        options = [f"{key}={value}" for key, value in zip(options[0::2], options[1::2])]
    for option in options:
        key, _, value = option.partition("=")
        found = next(_boolean_nodes(_composed(value)), None)
        if found:
            raise ConfigTypeError(
                f"--options {option}: {key} is spelt {found[1].value!r}; write true or false for a "
                f"boolean, or quote it ({key}='{found[1].value}') for text"
            )


def _composed(text):
    """The YAML node tree of `text`; None where it is not YAML (OmegaConf then reports it)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def _boolean_nodes(node, key=""):
    """(dotted key, YAML scalar node) of every scalar a YAML 1.1 loader reads as a boolean, other than
    true and false."""
    if isinstance(node, yaml.MappingNode):
        for name, value in node.value:
            yield from _boolean_nodes(value, f"{key}.{name.value}" if key else str(name.value))
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            yield from _boolean_nodes(value, f"{key}[{index}]")
    elif (
        isinstance(node, yaml.ScalarNode)
        and node.tag == "tag:yaml.org,2002:bool"
        and node.value.lower() not in BOOLEAN_WORDS
    ):
        yield key, node


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
