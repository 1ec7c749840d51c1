"""The workflow's config check: every mistake as one line naming the key, the bad value and what is allowed.

:func:`check_config` validates the merged config against the workflow's JSON
Schema (Draft 2020-12; a ``$ref`` to another file resolves beside the schema
that names it), fills in the schema's ``default`` values, and reports each
problem on one line::

    /tmp/my.yaml: unknown key chest.registration.stepz; allowed keys under chest.registration: methods, steps, ...
    config: chest.prealign.image_size = 60: must be a whole number >= 16 and a multiple of 8. Training and ...

The line starts with the config file that set the offending key (the last one
given that holds it) or ``config`` when none did. A failing key's own
``description`` in the schema follows the rule, so a schema can say there how
to fix the value (the chest schema's JSRT ``source`` says how to obtain JSRT).

Beyond standard JSON Schema, two checks that a schema cannot express:

* the keyword ``sumTo`` on a number list: the numbers must sum to this value
  (within :data:`SUM_TOLERANCE`), e.g. train/validation/test fractions;
* a section that picks a sourcing mode (``source`` with ``raw_dir`` beside it,
  see :mod:`medrepro.data.sourcing`) must name its ``raw_dir`` when ``source`` is
  ``verify``: a user-placed copy has to be somewhere.
"""

from __future__ import annotations

import difflib
import functools
import json
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml
from referencing.exceptions import Unresolvable

from medrepro.errors import ConfigError

SUM_TOLERANCE = 1e-6
MAX_PROBLEMS = 5  # lines shown; more are counted
MAX_VALUE_CHARS = 60
TYPE_NAMES = {"integer": "a whole number", "number": "a number", "string": "a text", "boolean": "true or false",
              "null": "null", "array": "a list", "object": "a mapping"}
README_SECTION = "README: Using the real datasets"


class Problem(NamedTuple):
    """One thing wrong with the config: where (keys and list indices from the top) and what."""

    path: tuple
    text: str
    value_shown: bool = True  # whether the problem is about the value at ``path`` (else about a key)
    cause: tuple | None = None  # the key whose setting caused it, when not ``path`` itself


# ---------------------------------------------------------------- entry point


def check_config(config: dict, schema_path: str | Path, config_files: Iterable[str | Path] = ()) -> None:
    """Validate ``config`` (filling in schema defaults); raise ConfigError with one line per problem.

    ``config_files`` are the files the config was merged from, later ones
    overriding earlier ones; each problem names the one that set its key.
    """
    problems = config_problems(config, schema_path)
    if problems:
        raise ConfigError(format_problems(problems, config, config_files))


def check_config_files(config_files: Iterable[str | Path], schema_path: str | Path) -> dict:
    """Merge ``config_files`` as Snakemake merges its config files (later ones over earlier ones, mappings
    key by key), check the result as :func:`check_config` does and return it with its defaults filled in.
    The workflow's check without starting Snakemake (tests, tools)."""
    config_files = [Path(f) for f in config_files]
    config: dict = {}
    for path in config_files:
        merge_config(config, _read_config_file(path) or {})
    check_config(config, schema_path, config_files)
    return config


def merge_config(config: dict, overrides: dict) -> dict:
    """Update ``config`` in place with ``overrides``: nested mappings merged key by key, anything else
    replaced, like ``snakemake.utils.update_config``."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merge_config(config[key], value)
        else:
            config[key] = value
    return config


def config_problems(config: dict, schema_path: str | Path) -> list[Problem]:
    """Everything wrong with ``config``: schema errors first, then the checks a schema cannot express."""
    schema, registry = load_schema(schema_path)
    validator = _validator_class()(schema, registry=registry)
    lookup = _RefLookup(schema, registry)
    problems = [p for error in validator.iter_errors(config) for p in _problems_from_error(error, lookup)]
    return sorted(problems, key=_path_order) or list(_missing_raw_dirs(config))


def format_problems(problems: list[Problem], config: dict, config_files: Iterable[str | Path] = ()) -> str:
    files = [Path(f) for f in config_files]
    lines = [f"{_origin(p, config, files)}: {p.text}" for p in _unique(problems)]
    more = len(lines) - MAX_PROBLEMS
    return "\n".join(lines[:MAX_PROBLEMS] + ([f"... and {more} more"] if more > 0 else []))


# ---------------------------------------------------------------- the schema and its validator


def load_schema(schema_path: str | Path):
    """The schema and a registry that loads the files its ``$ref`` s name (YAML or JSON) on demand."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    schema_path = Path(schema_path).resolve()
    schema = {**_schema_document(schema_path), "$id": schema_path.as_uri()}

    @functools.cache  # the validator asks once per $ref it meets, not once per file
    def retrieve(uri: str):
        return Resource(_schema_document(Path(url2pathname(urlparse(uri).path))), DRAFT202012)

    registry = Registry(retrieve=retrieve).with_resource(schema["$id"], Resource(schema, DRAFT202012))
    return schema, registry


def _schema_document(path: Path) -> dict:
    """A schema file without its ``$schema``: jsonschema would otherwise validate below a ``$ref`` to it
    with the plain Draft 2020-12 validator, without the defaults and ``sumTo`` added here."""
    document = _load_yaml(path)
    document.pop("$schema", None)
    return document


def _load_yaml(path: Path) -> dict:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the config schema: {exc}") from exc


def _validator_class():
    from jsonschema import Draft202012Validator, ValidationError, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def properties_with_defaults(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, subschema["default"])
        yield from check_properties(validator, properties, instance, schema)

    def sum_to(validator, total, instance, schema):
        numbers = validator.is_type(instance, "array") and all(validator.is_type(x, "number") for x in instance)
        if numbers and abs(sum(instance) - total) > SUM_TOLERANCE:
            yield ValidationError(f"sums to {sum(instance):.6g}, not {total}")

    return validators.extend(Draft202012Validator, {"properties": properties_with_defaults, "sumTo": sum_to})


def _path_order(problem: Problem) -> tuple:
    return tuple(str(part) for part in problem.path)


class _RefLookup:
    """Resolves a ``$ref`` met while describing a schema: against the root schema, then each schema file beside it."""

    def __init__(self, schema: dict, registry):
        folder = Path(url2pathname(urlparse(schema["$id"]).path)).parent
        self.registry = registry
        self.bases = [schema["$id"], *(p.resolve().as_uri() for p in sorted(folder.glob("*.y*ml")))]

    def __call__(self, ref: str) -> dict | None:
        for base in self.bases:
            try:
                return self.registry.resolver(base).lookup(ref).contents
            except Unresolvable:  # not against this base: try the next
                continue
        return None


# ---------------------------------------------------------------- errors as one line each


def _problems_from_error(error, lookup) -> Iterator[Problem]:
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        yield from _unknown_keys(path, error.instance, error.schema)
    elif error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        for key in missing:
            yield Problem((*path, key), f"missing key {key_path((*path, key))}", value_shown=False)
    else:
        yield Problem(path, _bad_value(path, error, lookup))


def _unknown_keys(path: tuple, instance: dict, schema: dict) -> Iterator[Problem]:
    allowed = list(schema.get("properties", {}))
    where = f"under {key_path(path)}" if path else "at the top level"
    for key in instance:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        yield Problem((*path, key), f"unknown key {key_path((*path, key))}; allowed keys {where}: "
                      f"{', '.join(allowed) or '(none)'}{hint}", value_shown=False)


def _bad_value(path: tuple, error, lookup) -> str:
    allowed = describe(error.schema, lookup)
    detail = f" ({error.message})" if error.validator == "sumTo" else ""
    text = f"{key_path(path) or 'the config'} = {show_value(error.instance)}: must be {allowed}{detail}"
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    return f"{text}. {description[:1].upper()}{description[1:]}" if description else text


def describe(schema, lookup=lambda ref: None) -> str:
    """What a (sub)schema allows, in a few words: 'a whole number >= 1', 'one of synthetic, verify'."""
    if not isinstance(schema, dict):
        return "a valid value"
    if "$ref" in schema:
        target = lookup(schema["$ref"])
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return describe({**target, **rest}, lookup) if target is not None else "as the schema says"
    for combinator in ("oneOf", "anyOf"):
        if combinator in schema:
            return " or ".join(describe(alternative, lookup) for alternative in schema[combinator])
    if "allOf" in schema:
        return ", ".join(describe(part, lookup) for part in schema["allOf"])
    if "const" in schema:
        return f"exactly {show_value(schema['const'])}"
    if "enum" in schema:
        choices = [show_value(v, quote=False) for v in schema["enum"]]
        return choices[0] if len(choices) == 1 else "one of " + ", ".join(choices)
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or [])
    head = " ".join(w for w in (" or ".join(TYPE_NAMES.get(t, t) for t in types), _bounds(schema)) if w)
    words = [w for w in (head, *_container_words(schema, types, lookup)) if w]
    return ", ".join(words).replace(", with ", " with ", 1) or "a valid value"


def _bounds(schema: dict) -> str:
    words = [f"{sign} {schema[key]}" for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"),
                                                       ("maximum", "<="), ("exclusiveMaximum", "<"))
             if key in schema]
    if "multipleOf" in schema:
        words.append(f"a multiple of {schema['multipleOf']}")
    excluded = schema.get("not")
    if isinstance(excluded, dict) and set(excluded) == {"multipleOf"}:
        words.append("odd" if excluded["multipleOf"] == 2 else f"not a multiple of {excluded['multipleOf']}")
    return " and ".join(words)


def _container_words(schema: dict, types: list[str], lookup) -> list[str]:
    words = []
    if "array" in types:
        words.append(_count_words(schema.get("minItems"), schema.get("maxItems"), "item"))
        if isinstance(schema.get("items"), dict):
            words.append(f"each {describe(schema['items'], lookup)}")
        if schema.get("uniqueItems"):
            words.append("without repeats")
        if "sumTo" in schema:
            words.append(f"summing to {schema['sumTo']}")
    if "object" in types:
        words.append(_count_words(schema.get("minProperties"), schema.get("maxProperties"), "entry", "entries"))
        keys = list(schema.get("properties", {}))
        if keys and schema.get("additionalProperties") is False:
            words.append("with keys from " + ", ".join(keys))
    if "string" in types and schema.get("minLength", 0) >= 1:
        words.append("not empty")
    return words


def _count_words(low, high, noun: str, plural: str | None = None) -> str:
    plural = plural or noun + "s"
    if low is not None and low == high:
        return f"with exactly {low} {noun if low == 1 else plural}"
    parts = ([f"at least {low}"] if low else []) + ([f"at most {high}"] if high is not None else [])
    return f"with {' and '.join(parts)} {noun if (high or low) == 1 else plural}" if parts else ""


# ---------------------------------------------------------------- checks a schema cannot express


def _missing_raw_dirs(config, path: tuple = ()) -> Iterator[Problem]:
    """Sections whose ``source: verify`` (a user-placed copy) has no ``raw_dir`` to find it in."""
    if isinstance(config, dict):
        if config.get("source") == "verify" and "raw_dir" in config and not config["raw_dir"]:
            yield Problem((*path, "raw_dir"), f"{key_path((*path, 'raw_dir'))} = {show_value(config['raw_dir'])}, "
                          f"but {key_path((*path, 'source'))} is verify: set raw_dir to the folder that holds your "
                          f"copy of the data ({README_SECTION}), or choose another source", cause=(*path, "source"))
        for key, value in config.items():
            yield from _missing_raw_dirs(value, (*path, key))


# ---------------------------------------------------------------- wording helpers


def key_path(path: Iterable) -> str:
    """``('chest', 'split', 'fractions', 0)`` -> ``chest.split.fractions[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def show_value(value, quote: bool = True) -> str:
    """A config value as YAML-like text (null, true, 'text', [1, 2]), shortened to a readable length."""
    if isinstance(value, str) and not quote:
        text = value
    else:
        text = json.dumps(value, default=str, ensure_ascii=False).replace('"', "'")
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 3] + "..."


def _unique(problems: list[Problem]) -> list[Problem]:
    seen, unique = set(), []
    for problem in problems:
        if problem.text not in seen:
            seen.add(problem.text)
            unique.append(problem)
    return unique


_MISSING = object()


def _origin(problem: Problem, config: dict, files: list[Path]) -> str:
    """The last config file that sets the problem's key (to the offending value, when it is about a value)."""
    key = problem.cause or problem.path
    wanted = _lookup(config, key)
    for path in reversed(files):
        found = _lookup(_read_config_file(path), key)
        if found is not _MISSING and (not problem.value_shown or found == wanted):
            return str(path)
    return "config"


def _read_config_file(path: Path):
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None


def _lookup(data, path: tuple):
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return data
