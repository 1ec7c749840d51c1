"""The config check: one line per problem, naming the key, the bad value, what is allowed and the file that set it."""

import copy
from pathlib import Path

import pytest
import yaml

from medrepro.pipeline.config_check import check_config, config_problems, describe, key_path, load_schema, show_value
from medrepro.errors import ConfigError

from conftest import REPO

WORKFLOW_SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"

TOP = """
$schema: "https://json-schema.org/draft/2020-12/schema"
type: object
additionalProperties: false
required: [seed, part]
properties:
  seed: {type: integer, minimum: 0, description: fixes every random choice}
  part: {$ref: "part.schema.yaml"}
"""
PART = """
$schema: "https://json-schema.org/draft/2020-12/schema"
definitions:
  positive_int: {type: integer, minimum: 1}
type: object
additionalProperties: false
properties:
  steps: {$ref: "#/definitions/positive_int"}
  shares: {type: array, items: {type: number, minimum: 0}, minItems: 3, maxItems: 3, sumTo: 1}
  size: {oneOf: [{type: "null"}, {type: integer, minimum: 32}]}
  kind: {enum: [a, b], description: "a or b; c needs a licence"}
  padding: {type: integer, default: 4}
  data:
    type: object
    properties:
      source: {enum: [synthetic, verify]}
      raw_dir: {type: [string, "null"]}
"""


@pytest.fixture
def schema(tmp_path):
    (tmp_path / "top.schema.yaml").write_text(TOP)
    (tmp_path / "part.schema.yaml").write_text(PART)
    return tmp_path / "top.schema.yaml"


def _problem_text(config, schema) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(config, schema)
    return str(err.value)


def test_a_valid_config_passes_and_gets_the_defaults_of_a_referenced_file(schema):
    config = {"seed": 1, "part": {"steps": 2, "shares": [0.5, 0.25, 0.25]}}
    check_config(config, schema)
    assert config["part"]["padding"] == 4  # the default lives in part.schema.yaml, behind a $ref


DEFINITIONS = """
$schema: "https://json-schema.org/draft/2020-12/schema"
$defs:
  positive_int: {type: integer, minimum: 1}
  count_or_null: {oneOf: [{type: "null"}, {$ref: "#/$defs/positive_int"}]}
  schedule:
    type: object
    additionalProperties: false
    required: [steps]
    properties:
      steps: {$ref: "#/$defs/positive_int"}
      log_every: {$ref: "#/$defs/positive_int", default: 1}
"""
SHARING = """
$schema: "https://json-schema.org/draft/2020-12/schema"
type: object
additionalProperties: false
properties:
  schedule: {$ref: "definitions.schema.yaml#/$defs/schedule"}
  workers: {$ref: "definitions.schema.yaml#/$defs/count_or_null"}
"""


@pytest.fixture
def shared_schema(tmp_path):
    """A study schema (behind the top one) whose keys are definitions in a third file, which refers within itself."""
    (tmp_path / "top.schema.yaml").write_text(TOP)
    (tmp_path / "part.schema.yaml").write_text(SHARING)
    (tmp_path / "definitions.schema.yaml").write_text(DEFINITIONS)
    return tmp_path / "top.schema.yaml"


def test_definitions_in_a_shared_file_validate_describe_and_fill_defaults(shared_schema):
    config = {"seed": 0, "part": {"schedule": {"steps": 3}, "workers": None}}
    check_config(config, shared_schema)
    assert config["part"]["schedule"] == {"steps": 3, "log_every": 1}  # a default two $refs away, in another file
    assert _problem_text({"seed": 0, "part": {"schedule": {"steps": 0}}}, shared_schema) == (
        "config: part.schedule.steps = 0: must be a whole number >= 1")
    assert _problem_text({"seed": 0, "part": {"workers": 0}}, shared_schema) == (
        "config: part.workers = 0: must be null or a whole number >= 1")  # a $ref inside the shared file
    assert _problem_text({"seed": 0, "part": {"schedule": {"steps": 1, "stepz": 2}}}, shared_schema) == (
        "config: unknown key part.schedule.stepz; allowed keys under part.schedule: steps, log_every "
        "(did you mean steps?)")


def test_unknown_keys_name_their_place_and_the_allowed_keys(schema):
    text = _problem_text({"seed": 1, "sed": 2, "part": {"stepz": 3}}, schema)
    lines = text.splitlines()
    assert lines == [
        "config: unknown key part.stepz; allowed keys under part: steps, shares, size, kind, padding, data "
        "(did you mean steps?)",
        "config: unknown key sed; allowed keys at the top level: seed, part (did you mean seed?)",
    ]


@pytest.mark.parametrize("part, expected", [
    ({"steps": 0}, "part.steps = 0: must be a whole number >= 1"),
    ({"steps": "many"}, "part.steps = 'many': must be a whole number >= 1"),
    ({"size": 16}, "part.size = 16: must be null or a whole number >= 32"),
    ({"kind": "c"}, "part.kind = 'c': must be one of a, b. A or b; c needs a licence"),
    ({"shares": [0.5, 0.3, 0.3]}, "part.shares = [0.5, 0.3, 0.3]: must be a list with exactly 3 items, each a "
                                  "number >= 0, summing to 1 (sums to 1.1, not 1)"),
    ({"shares": [1.0]}, "part.shares = [1.0]: must be a list with exactly 3 items, each a number >= 0, summing to 1"),
    ({"shares": [0.5, -0.5, 1.0]}, "part.shares[1] = -0.5: must be a number >= 0"),
])
def test_a_bad_value_is_named_with_what_is_allowed(schema, part, expected):
    assert _problem_text({"seed": 0, "part": part}, schema) == f"config: {expected}"


def test_fractions_summing_to_one_within_the_tolerance_pass(schema):
    check_config({"seed": 0, "part": {"shares": [0.6, 0.2, 0.2]}}, schema)  # 1.0000000000000002 in floats
    assert config_problems({"seed": 0, "part": {"shares": [0.6, 0.2, 0.2 + 2e-6]}}, schema)


def test_verify_without_raw_dir_is_named_after_the_schema_passed(schema):
    text = _problem_text({"seed": 0, "part": {"data": {"source": "verify", "raw_dir": None}}}, schema)
    assert text.startswith("config: part.data.raw_dir = null, but part.data.source is verify: set raw_dir")
    check_config({"seed": 0, "part": {"data": {"source": "verify", "raw_dir": "/data"}}}, schema)
    check_config({"seed": 0, "part": {"data": {"source": "synthetic", "raw_dir": None}}}, schema)


def test_the_message_names_the_last_config_file_that_set_the_key(schema, tmp_path):
    defaults, user = tmp_path / "defaults.yaml", tmp_path / "user.yaml"
    defaults.write_text("seed: 0\npart: {steps: 5, data: {source: synthetic, raw_dir: null}}\n")
    user.write_text("part: {steps: 0, data: {source: verify}}\ntypo: 1\n")
    config = {"seed": 0, "typo": 1, "part": {"steps": 0, "data": {"source": "verify", "raw_dir": None}}}
    with pytest.raises(ConfigError) as err:
        check_config(config, schema, config_files=[defaults, user])
    assert str(err.value).splitlines() == [
        f"{user}: part.steps = 0: must be a whole number >= 1",
        f"{user}: unknown key typo; allowed keys at the top level: seed, part",
    ]
    # the raw_dir problem comes from the file that chose `source: verify`, not from the defaults' null
    config["part"]["steps"] = 5
    del config["typo"]
    with pytest.raises(ConfigError) as err:
        check_config(config, schema, config_files=[defaults, user])
    assert str(err.value).startswith(f"{user}: part.data.raw_dir = null")
    # a value given on the command line (in no file) is not blamed on the file that holds another value
    config["part"]["steps"] = -1
    config["part"]["data"]["raw_dir"] = "/data"
    with pytest.raises(ConfigError) as err:
        check_config(config, schema, config_files=[defaults, user])
    assert str(err.value).startswith("config: part.steps = -1")


def test_many_problems_are_capped(schema):
    config = {"seed": 0, "part": {}, **{f"extra{k}": k for k in range(8)}}
    lines = _problem_text(config, schema).splitlines()
    assert len(lines) == 6 and lines[-1] == "... and 3 more"


def test_wording_helpers():
    assert key_path(("chest", "split", "fractions", 0)) == "chest.split.fractions[0]"
    assert key_path(()) == ""
    assert show_value(None) == "null" and show_value("x") == "'x'" and show_value([1, 2]) == "[1, 2]"
    assert show_value("y" * 100).endswith("...") and len(show_value("y" * 100)) == 60
    assert describe({"type": "integer", "minimum": 16, "multipleOf": 8}) == "a whole number >= 16 and a multiple of 8"
    assert describe({"type": "integer", "minimum": 3, "not": {"multipleOf": 2}}) == "a whole number >= 3 and odd"
    assert describe({"type": "integer", "not": {"multipleOf": 3}}) == "a whole number not a multiple of 3"
    assert describe({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.5}) == "a number > 0 and < 0.5"
    assert describe({"type": "string", "minLength": 1}) == "a text, not empty"
    assert describe({"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": ["x", "y"]}}) == (
        "a list with at least 1 item, each one of x, y, without repeats")
    assert describe({"type": "object", "minProperties": 2}) == "a mapping with at least 2 entries"


# ---------------------------------------------------------------- the workflow's own schemas


def _default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_every_shipped_config_passes():
    for path in sorted((REPO / "config").glob("*.yaml")):
        config = _default_config()
        _merge(config, yaml.safe_load(path.read_text()))
        assert config_problems(config, WORKFLOW_SCHEMA) == [], path


def _merge(base: dict, update: dict) -> None:
    """Snakemake's merge of a --configfile over config/config.yaml: key by key, lists replaced."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


@pytest.mark.parametrize("override, expected", [
    ({"chest": {"datasets": {"JSRT": {"source": "download"}}}}, "db.jsrt.or.jp"),
    ({"chest": {"datasets": {"JSRT": {"spacing_mm": 0.2}}}}, "leave it null"),
    ({"chest": {"split": {"fractions": [0.5, 0.3, 0.3]}}}, "summing to 1"),
    ({"cxr14": {"source": "verify"}}, "cxr14.raw_dir = null, but cxr14.source is verify"),
    ({"chest": {"prealign": {"image_size": 60}}}, "a multiple of 8"),
])
def test_the_workflow_schema_refuses_what_later_steps_would_fail_on(override, expected):
    config = _default_config()
    _merge(config, override)
    problems = config_problems(config, WORKFLOW_SCHEMA)
    assert len(problems) == 1 and expected in problems[0].text, problems


def _refs(schema):
    if isinstance(schema, dict):
        yield from ([schema["$ref"]] if "$ref" in schema else [])
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def test_every_ref_in_the_workflow_schemas_resolves():
    """Shared definitions live in definitions.schema.yaml; a $ref to a missing one fails here, not in a user's run."""
    _, registry = load_schema(WORKFLOW_SCHEMA)
    files = sorted(WORKFLOW_SCHEMA.parent.glob("*.schema.yaml"))
    refs = [(path, ref) for path in files for ref in _refs(yaml.safe_load(path.read_text()))]
    assert any(ref.startswith("definitions.schema.yaml#") for _, ref in refs)
    for path, ref in refs:
        registry.resolver(path.resolve().as_uri()).lookup(ref)  # raises for a ref to nowhere


def test_the_schema_check_stands_alone_without_snakemake(tmp_path):
    """The check reads the schema files itself: a copy elsewhere works the same."""
    for path in (REPO / "workflow" / "schemas").glob("*.yaml"):
        (tmp_path / path.name).write_text(path.read_text())
    config = _default_config()
    config["chest"]["registration"]["stepz"] = 3
    [problem] = config_problems(config, Path(tmp_path / "config.schema.yaml"))
    assert problem.text.startswith("unknown key chest.registration.stepz; allowed keys under chest.registration:")


def test_config_files_merge_as_snakemake_merges_them():
    from snakemake.utils import update_config

    from medrepro.pipeline.config_check import merge_config

    base = {"a": 1, "b": {"c": 2, "d": {"e": 3}}, "f": [1, 2]}
    overrides = {"b": {"d": {"e": 4, "g": 5}, "h": 6}, "f": [3], "i": None}
    expected = copy.deepcopy(base)
    update_config(expected, copy.deepcopy(overrides))
    assert merge_config(copy.deepcopy(base), copy.deepcopy(overrides)) == expected


def test_config_files_are_checked_as_the_workflow_checks_them(tmp_path):
    from medrepro.pipeline.config_check import check_config_files

    schema = REPO / "workflow/schemas/config.schema.yaml"
    merged = check_config_files([REPO / "config/config.yaml", REPO / "config/smoke.yaml"], schema)
    assert merged["results_dir"] == "results/smoke"
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: -1\n")
    with pytest.raises(ConfigError) as error:
        check_config_files([REPO / "config/config.yaml", bad], schema)
    assert str(error.value).startswith(f"{bad}: seed = -1")
