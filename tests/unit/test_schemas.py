from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ledger.alert_contract import alert_schemas
from ledger.contract import PERSONAL_FIELDS, json_schemas
from tests.events import DEFAULT_DATA, event_dict

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas" / "v1"


def test_checked_in_schemas_match_the_models() -> None:
    generated = {**json_schemas(), **alert_schemas()}
    on_disk = {
        str(p.relative_to(SCHEMA_DIR)): json.loads(p.read_text())
        for p in SCHEMA_DIR.rglob("*.json")
    }
    assert set(on_disk) == set(generated), "run `cxl schemas` to regenerate schemas/v1"
    for name, schema in generated.items():
        assert on_disk[name] == schema, f"{name} drifted from the model; run `cxl schemas`"


@pytest.mark.parametrize("type_", sorted(DEFAULT_DATA))
def test_a_valid_event_validates_against_its_published_schema(type_: str) -> None:
    schema = json.loads((SCHEMA_DIR / f"{type_}.json").read_text())
    jsonschema.validate(event_dict(type_), schema)


def test_the_published_schema_rejects_unknown_fields() -> None:
    schema = json.loads((SCHEMA_DIR / "promise.made.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event_dict(colour="red"), schema)


def test_every_free_text_field_and_nothing_else_is_marked_personal() -> None:
    marked = {
        (name.removesuffix(".json"), field)
        for name, schema in json_schemas().items()
        for def_ in schema.get("$defs", {}).values()
        for field, spec in def_.get("properties", {}).items()
        if spec.get("x-personal") is True
    }
    assert marked == {
        ("touchpoint.recorded", "outcome"),
        ("promise.made", "description"),
        ("promise.broken", "reason"),
        ("promise.renegotiated", "reason"),
        ("complaint.filed", "text"),
        ("complaint.resolved", "resolution"),
    }
    assert marked == {(t, f) for t, fields in PERSONAL_FIELDS.items() for f in fields}
