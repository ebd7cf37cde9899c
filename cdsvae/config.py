"""Typed, validated YAML configs: the machinery, not the keys.

A config is a dict of sections, each a dict of keys. Every key is declared in a schema with
its default and type, so a typo or a wrong type fails at start-up with one line that names the
key and lists the valid ones, instead of hours later (or never) inside a training run.

This module provides the pieces (:class:`Field`, :class:`Section`, :func:`validate`, YAML
reading and writing, ``--section.key value`` overrides, :func:`load_config`) and imports
nothing of the package but its errors and file helpers. It is the one way a config section and its
defaults are declared; each section is declared once, by the code that reads it: ``model`` by
:mod:`cdsvae.models`, ``loss`` by :mod:`cdsvae.objectives`, ``optim`` by :mod:`cdsvae.train.optim`,
``train`` by :mod:`cdsvae.train.optim`, the keys of each ``data.type`` by its data module,
``augment`` and the common ``data`` keys by :mod:`cdsvae.experiment.schema`, which assembles the
schema of an experiment; the sections of a judge config by the judges that read them. Code that
reads a section through a dataclass takes the dataclass's defaults from the section and checks it
with :func:`check_section`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from typing import Any, Mapping, Sequence

import yaml

from cdsvae.io import UserError, atomic_write_text, read_yaml

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class Field:
    """One config key: ``kind`` is "int", "float", "bool", "str", "floats" (a list) or "any"."""

    default: Any
    kind: str
    choices: tuple | None = None
    optional: bool = False  # None is accepted
    length: int | None = None  # for "floats"
    minimum: float | None = None

    def describe(self) -> str:
        if self.choices:
            what = "one of " + "|".join(str(c) for c in self.choices)
        elif self.kind == "floats":
            what = f"a list of {self.length} numbers" if self.length else "a list of numbers"
        else:
            what = {"int": "an integer", "float": "a number", "bool": "true or false",
                    "str": "a string", "any": "a value"}[self.kind]
        if self.minimum is not None:
            what += f" >= {self.minimum:g}"
        return what + (" or null" if self.optional else "")


@dataclasses.dataclass
class Section:
    """A section's fields; ``open`` sections also accept undeclared keys (passed through)."""

    fields: dict[str, Field]
    open: bool = False

    def defaults(self) -> dict[str, Any]:
        """A fresh copy of the declared defaults (keys the config must set are left out)."""
        return {k: copy.deepcopy(f.default) for k, f in self.fields.items() if f.default is not _MISSING}


Schema = dict[str, Section]


def field_from_default(value: Any) -> Field:
    """Infer a field from a default value (used for sections declared by other modules)."""
    if isinstance(value, bool):
        return Field(value, "bool")
    if isinstance(value, int):
        return Field(value, "int")
    if isinstance(value, float):
        return Field(value, "float")
    if isinstance(value, str):
        return Field(value, "str")
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return Field(list(value), "floats", length=len(value))
    return Field(value, "any", optional=True)


def _coerce(where: str, field: Field, value: Any) -> Any:
    """Check ``value`` against ``field``; return the value in canonical form or raise ValueError."""
    if value is None:
        if field.optional or field.kind == "any":
            return None
        raise ValueError
    kind = field.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError
    elif kind == "float":
        # PyYAML reads "1e-3" (no dot) as a string; accept any string float() understands.
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = float(value)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError
        value = float(value)
    elif kind == "str":
        if not isinstance(value, str):
            raise ValueError
    elif kind == "floats":
        if not isinstance(value, (list, tuple)):
            raise ValueError
        value = [_coerce(where, Field(None, "float"), v) for v in value]
        if field.length is not None and len(value) != field.length:
            raise ValueError
    if field.choices is not None and value not in field.choices:
        raise ValueError
    if field.minimum is not None and value < field.minimum:
        raise ValueError
    return value


def _valid_keys(section: Section) -> str:
    keys = ", ".join(sorted(section.fields))
    return keys + (" (other keys are passed through)" if section.open else "")


def validate(cfg: Mapping[str, Any], schema: Schema, source: str = "config") -> dict[str, dict[str, Any]]:
    """Merge ``cfg`` over the schema defaults and check every key; return the resolved config."""
    if not isinstance(cfg, Mapping):
        raise UserError(f"{source}: expected a mapping of sections ({', '.join(schema)}), got {type(cfg).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for name in cfg:
        if name not in schema:
            raise UserError(f"{source}: unknown section '{name}'; valid sections: {', '.join(schema)}")
    for name, section in schema.items():
        given = cfg.get(name) or {}
        if not isinstance(given, Mapping):
            raise UserError(f"{source}: section '{name}' must be a mapping; valid keys in '{name}': "
                            f"{_valid_keys(section)}")
        resolved = {k: f.default if f.default is _MISSING else copy.deepcopy(f.default)
                    for k, f in section.fields.items()}
        for key, value in given.items():
            field = section.fields.get(key)
            if field is None:
                if section.open:
                    resolved[key] = value
                    continue
                raise UserError(f"{source}: unknown key '{name}.{key}'; valid keys in '{name}': "
                                f"{_valid_keys(section)}")
            try:
                resolved[key] = _coerce(f"{name}.{key}", field, value)
            except (ValueError, TypeError):
                raise UserError(f"{source}: '{name}.{key}' must be {field.describe()}, got {value!r}; "
                                f"valid keys in '{name}': {_valid_keys(section)}") from None
        for key, field in section.fields.items():
            if resolved[key] is _MISSING:
                raise UserError(f"{source}: '{name}.{key}' is required ({field.describe()}); "
                                f"valid keys in '{name}': {_valid_keys(section)}")
        out[name] = resolved
    return out


def check_section(name: str, values: Mapping[str, Any], section: Section, source: str) -> None:
    """Check one section's values against its declaration (unknown keys, types, choices, minimums),
    raising the one-line error of :func:`validate`; the values themselves are left as they are."""
    validate({name: dict(values)}, {name: section}, source)


def required(kind: str, **kw) -> Field:
    """A field with no default: the config must set it."""
    return Field(_MISSING, kind, **kw)


def parse_overrides(args: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Turn ``["--optim.lr", "1e-4", "--train.amp=bf16"]`` into ``{"optim": {"lr": 1e-4}, ...}``.

    Values are parsed as YAML, so ``true``, ``3``, ``[0.9, 0.99]`` and ``null`` keep their types.
    """
    out: dict[str, dict[str, Any]] = {}
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=", 1)[0]:
            raise UserError(f"unexpected argument '{arg}': overrides look like --section.key VALUE")
        if "=" in arg:
            name, text = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise UserError(f"override '{arg}' needs a value")
            name, text = arg[2:], args[i + 1]
            i += 2
        section, _, key = name.partition(".")
        if not section or not key or "." in key:
            raise UserError(f"bad override '{arg}': expected --section.key VALUE")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        out.setdefault(section, {})[key] = value
    return out


def merge(base: Mapping[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Section-wise merge: override keys replace base keys, other keys are kept."""
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for section, values in overrides.items():
        current = out.get(section)
        out[section] = {**(current if isinstance(current, Mapping) else {}), **values}
    return out


def load_config(path: str | os.PathLike | None, overrides: Sequence[str] | Mapping,
                schema: Schema) -> dict[str, dict[str, Any]]:
    """Read ``path`` (optional), apply overrides (``--section.key value`` arguments or a mapping),
    validate against ``schema``; errors name ``path``."""
    raw = read_yaml(path) if path is not None else {}
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    source = str(path) if path is not None else "config"
    return validate(merge(raw, overrides), schema, source)


def to_yaml(cfg: Mapping[str, Any]) -> str:
    """The config as YAML, sections and keys in their order."""
    return yaml.safe_dump(to_plain(cfg), sort_keys=False, default_flow_style=False)


def dump_config(cfg: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write the resolved config atomically, so a later stage can read it back as its only input."""
    atomic_write_text(path, to_yaml(cfg))


def to_plain(obj: Any) -> Any:
    """Dicts, lists, str, int, float, bool and None only (YAML may also yield dates): what both
    ``yaml.safe_dump`` and ``torch.load(weights_only=True)`` accept."""
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)
