"""Declarations: mistakes name the file and the field; a yes/no label is written as 1/0 or quarantined."""

import textwrap

import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.typing import Series

from platform_assets.declarations import DeclarationError, Source, use_case_from_dict, use_case_to_dict
from platform_assets.declared import read_declarations, use_cases
from platform_assets.validate.rules import REASONS, encode_label, split_valid_rows

USE_CASE = {
    "name": "offers", "label": "accepted", "entity_keys": ["offer_id"], "feature_service": "offers_model",
    "protected_attribute": "region", "model_name": "offers",
    "source": {"name": "offers", "file_prefix": "offers", "schema": "x:Y", "key": "offer_id", "event_time": "sent_at",
               "label": "accepted", "positive_label": "yes", "negative_label": "no", "protected": ["region"]},
}


class OfferSchema(pa.DataFrameModel):
    offer_id: Series[str]
    accepted: Series[str] = pa.Field(nullable=True)  # no isin: the declared values alone decide


def _write(folder, text):
    (folder / "offers").mkdir(parents=True)
    (folder / "offers" / "defs.yaml").write_text(textwrap.dedent(text))
    return folder / "offers" / "defs.yaml"


def test_a_declaration_survives_the_round_trip_the_server_receives():
    for declared in use_cases():
        assert use_case_from_dict(use_case_to_dict(declared), "round trip") == declared
    offers = use_case_from_dict(USE_CASE, "here")
    assert use_case_from_dict(use_case_to_dict(offers), "round trip") == offers


def test_unquoted_yes_and_no_are_refused_with_the_fix(tmp_path):
    path = _write(tmp_path, """\
        type: platform_assets.components.UseCaseComponent
        attributes:
          name: offers
          label: accepted
          entity_keys: [offer_id]
          feature_service: offers_model
          protected_attribute: region
          model_name: offers
          source: {name: offers, file_prefix: offers, schema: "x:Y", key: offer_id, event_time: sent_at,
                   label: accepted, positive_label: yes, negative_label: no, protected: [region]}
        """)
    with pytest.raises(DeclarationError, match="quote them") as raised:
        read_declarations(tmp_path)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, r"unknown field\(s\) \['colour'\]"),
    ({"protected_attribute": "age"}, "protected_attribute 'age' is not among"),
    ({"entity_keys": ["customer_id"]}, "must include the source key 'offer_id'"),
    ({"source": {**USE_CASE["source"], "negative_label": None}}, "must both be set"),
    ({"source": {**USE_CASE["source"], "file_prefix": "offers/*"}}, "file_prefix"),
    ({"source": {**USE_CASE["source"], "key": ""}}, "source offers: key '': must be a column name"),
    ({"source": {**USE_CASE["source"], "event_time": True}}, "event_time True: YAML read it as a boolean: quote it"),
    ({"source": {**USE_CASE["source"], "pii": ['e"mail']}}, "pii 'e\"mail': must not hold a double quote"),
    ({"entity_keys": ["offer_id", "batch\nid"]}, "use case offers: entity_keys 'batch.*control character"),
])
def test_a_wrong_declaration_names_the_field(change, message):
    with pytest.raises(DeclarationError, match=message):
        use_case_from_dict({**USE_CASE, **change}, "defs/offers/defs.yaml")


def test_reserved_words_are_column_names_like_any_other():
    """Quoted in SQL, ``default``, ``order`` or ``group`` name columns as well as any other word."""
    source = {**USE_CASE["source"], "key": "user", "event_time": "order", "label": "default", "protected": ["group"]}
    declared = use_case_from_dict({**USE_CASE, "source": source, "label": "default", "entity_keys": ["user"],
                                   "protected_attribute": "group"}, "defs/offers/defs.yaml")
    assert (declared.source.key, declared.source.event_time, declared.label) == ("user", "order", "default")


def test_declared_columns_must_be_in_the_schema(monkeypatch):
    source = Source(name="offers", file_prefix="offers", schema="tests.unit.test_declarations:OfferSchema",
                    key="offer_id", event_time="sent_at")
    with pytest.raises(DeclarationError, match=r"event_time \['sent_at'\] not in schema"):
        source.check_columns()


def test_the_label_s_two_values_become_1_and_0_and_any_other_is_quarantined():
    source = use_case_from_dict(USE_CASE, "here").source
    rows = pd.DataFrame({"offer_id": ["a", "b", "c", "d", "e"], "accepted": ["yes", "no", "maybe", None, "YES"]})
    result = encode_label(split_valid_rows(rows, OfferSchema, ()), rows, source)
    assert len(result.valid) + len(result.quarantined) == len(rows)
    assert dict(zip(result.valid["offer_id"], result.valid["accepted"].astype("object"))) == {
        "a": 1, "b": 0, "d": pd.NA}
    assert dict(zip(result.quarantined["offer_id"], result.quarantined[REASONS])) == {
        "c": "accepted: not 'yes' or 'no' (got 'maybe')", "e": "accepted: not 'yes' or 'no' (got 'YES')"}
    assert result.failure_counts == {"label_value": 2}


def test_a_label_without_declared_values_is_left_as_it_is():
    source = Source(name="offers", file_prefix="offers", schema="x:Y", key="offer_id", event_time="t", label="accepted")
    rows = pd.DataFrame({"offer_id": ["a"], "accepted": ["maybe"]})
    result = encode_label(split_valid_rows(rows, OfferSchema, ()), rows, source)
    assert list(result.valid["accepted"]) == ["maybe"] and result.quarantined.empty


class AgedOfferSchema(OfferSchema):
    sent_at: Series[pd.Timestamp]
    age: Series[int]
    region: Series[str]


def test_the_protected_attribute_is_optional_and_a_number_is_refused_naming_the_field(monkeypatch):
    from platform_assets import declarations

    monkeypatch.setattr(declarations, "import_object", lambda path, where: AgedOfferSchema)
    without = use_case_from_dict({k: v for k, v in USE_CASE.items() if k != "protected_attribute"}, "here")
    assert without.protected_attribute is None
    without.check_columns()  # nothing to slice by: fine
    aged = use_case_from_dict({**USE_CASE, "protected_attribute": "age",
                               "source": {**USE_CASE["source"], "protected": ["region", "age"]}}, "defs.yaml")
    with pytest.raises(DeclarationError, match="protected_attribute 'age' is a number .*banded"):
        aged.check_columns()
    use_case_from_dict(USE_CASE, "here").check_columns()  # a text column: fine


def test_dg_scaffold_defs_writes_every_field_commented_and_it_loads(tmp_path):
    """The scaffolded defs.yaml is a declaration that loads as it is (values to replace), every field explained."""
    import dagster as dg

    from platform_assets.components import UseCaseComponent
    from platform_assets.declarations import UseCase

    scaffolder = dg.components.scaffold.scaffold.get_scaffolder(UseCaseComponent)
    scaffolder.scaffold(dg.ScaffoldRequest(type_name="platform_assets.components.UseCaseComponent",
                                           target_path=tmp_path / "term_deposit", scaffold_format="yaml",
                                           project_root=tmp_path, params=None))
    text = (tmp_path / "term_deposit" / "defs.yaml").read_text()
    (declared,) = read_declarations(tmp_path)
    assert isinstance(declared, UseCase) and declared.name == declared.source.name == "term_deposit"
    documented = {line.strip().lstrip("# ").split(":")[0] for line in text.splitlines() if ":" in line}
    assert {"name", "schema", "key", "event_time", "label", "pii", "protected", "protected_attribute",
            "positive_label", "label_time", "entity_keys", "model_name", "feature_service", "marts", "gate"} <= documented
    lines = text.splitlines()[2:]  # after `type:` and `attributes:`
    for before, line in zip(lines, lines[1:]):  # each field says what it is, on its line or the one above
        assert "#" in line or before.strip().startswith("#"), line
