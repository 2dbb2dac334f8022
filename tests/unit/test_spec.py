"""The workflow file format's JSON Schema, derived from the models that validate files."""

from __future__ import annotations

from typing import Any

from wtflow.spec import json_schema


def node_property(name: str) -> Any:
    return json_schema()["$defs"]["NodeSpec"]["properties"][name]


def test_schema_documents_both_forms_of_command() -> None:
    assert node_property("command")["anyOf"] == [
        {"type": "string"},
        {"items": {"type": "string"}, "type": "array"},
        {"type": "null"},
    ]


def test_schema_documents_both_forms_of_retries() -> None:
    retries = node_property("retries")
    assert retries["anyOf"] == [{"type": "integer"}, {"$ref": "#/$defs/RetriesSpec"}, {"type": "null"}]
    assert retries["description"] == "A number, or {max, delay, backoff}"


def test_schema_documents_both_forms_of_needs() -> None:
    assert node_property("needs")["anyOf"] == [{"type": "string"}, {"items": {"type": "string"}, "type": "array"}]


def test_schema_refuses_unknown_keys_at_every_level_but_the_matrixs_own() -> None:
    schema = json_schema()
    assert schema["additionalProperties"] is False
    definitions = dict(schema["$defs"])
    matrix = definitions.pop("MatrixSpec")
    assert all(definition["additionalProperties"] is False for definition in definitions.values())
    assert matrix["additionalProperties"] == {"items": {}, "minItems": 1, "type": "array"}
    assert matrix["propertyNames"] == {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"}


def test_schema_allows_top_level_extension_keys() -> None:
    assert json_schema()["patternProperties"] == {"^x-": {}}
