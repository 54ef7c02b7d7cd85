"""A use case that declares no dbt mart: its features are its own columns, the mart and the Feast view derived.

What the derivation takes as model inputs, the mart it builds on real DuckDB (keyword names, counts kept),
the Feast objects it registers on a real registry, and a repository's own object of the same name winning.
The whole flow from landing files to a drift report is ``tests/integration/test_adding_a_dataset.py``.
"""

import textwrap

import duckdb
import pandas as pd
import pandera.pandas as pa
import pytest
from pandera.typing import Series

from platform_assets.declarations import DeclarationError, Source, UseCase, use_case_from_dict
from platform_assets.features import derived, feast_ops


class OrderSchema(pa.DataFrameModel):
    """Keyword names, a second time, personal and protected data, numbers of three kinds and a category."""

    user: Series[str]
    order: Series[pa.DateTime]
    shipped_at: Series[pa.DateTime] = pa.Field(nullable=True)
    limit: Series[float]
    items: Series[int]
    express: Series[bool]
    window: Series[str]
    to: Series[str]
    group: Series[str]
    default: Series[int] = pa.Field(isin=[0, 1])


class OnlyKeysSchema(pa.DataFrameModel):
    user: Series[str]
    order: Series[pa.DateTime]
    default: Series[int]


def _use_case(schema: str = "OrderSchema", **declared) -> UseCase:
    source = Source(name="orders", file_prefix="orders", schema=f"{__name__}:{schema}", key="user",
                    event_time="order", label="default", pii=("to",), protected=("group",))
    return UseCase(name="card_orders", source=source, **declared)


def test_what_is_left_out_of_a_declaration_follows_from_the_rest():
    use_case = _use_case()
    assert (use_case.label, use_case.entity_keys, use_case.feature_service, use_case.model_name) == (
        "default", ("user",), "card_orders_model", "card-orders")
    assert use_case.derives_features and use_case.feature_marts == ("fct_card_orders_features",)
    declared = _use_case(marts=("fct_mine",), feature_service="mine", model_name="m")
    assert not declared.derives_features and declared.feature_marts == ("fct_mine",)
    assert (declared.feature_service, declared.model_name) == ("mine", "m")
    with pytest.raises(DeclarationError,
                       match="defs.yaml: use case x: label: neither the use case nor source s declares"):
        use_case_from_dict({"name": "x", "source": {"name": "s", "file_prefix": "s", "schema": "a:B", "key": "k",
                                                    "event_time": "t"}}, "defs.yaml")


def test_the_model_inputs_are_the_columns_that_are_not_keys_times_labels_personal_or_protected():
    found = derived.derived_features(_use_case())
    assert found.numeric == ("limit", "items", "express") and found.text == ("window",)
    assert (found.mart, found.view) == ("fct_card_orders_features", "card_orders_features")
    with pytest.raises(DeclarationError, match="has no column that can be a model input"):
        derived.derived_features(_use_case("OnlyKeysSchema"))


def test_the_mart_holds_every_validated_row_with_its_inputs_typed_and_keyword_names_quoted():
    use_case = _use_case()
    found = derived.derived_features(use_case)
    rows = pd.DataFrame({"user": ["u1", "u2", "u3"], "order": pd.to_datetime(["2026-11-01 08:00", "2026-11-01 09:00",
                                                                              "2026-11-02 10:00"]),
                         "shipped_at": pd.NaT, "limit": [1.5, None, 3.0], "items": [1, 2, 3],
                         "express": [True, False, True], "window": ["am", None, "pm"], "to": "tok",
                         "group": "a", "default": [0, 1, 0]})
    with duckdb.connect() as con:
        con.execute("CREATE SCHEMA validated")
        con.execute("CREATE TABLE validated.orders AS SELECT * FROM rows")
        assert derived.build_mart(con, use_case, found) == 3
        mart = con.execute("SELECT * FROM features.fct_card_orders_features ORDER BY event_timestamp").df()
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'fct_card_orders_features'").fetchall())
        rows.loc[0, "limit"] = 9.0  # rebuilt from the table as it is now
        con.execute("CREATE OR REPLACE TABLE validated.orders AS SELECT * FROM rows")
        derived.build_mart(con, use_case, found)
        rebuilt = con.execute("SELECT \"limit\" FROM features.fct_card_orders_features WHERE \"user\" = 'u1'").fetchone()
    assert list(mart.columns) == ["user", "event_timestamp", "limit", "items", "express", "window"]
    assert types == {"user": "VARCHAR", "event_timestamp": "TIMESTAMP", "limit": "DOUBLE", "items": "DOUBLE",
                     "express": "DOUBLE", "window": "VARCHAR"}
    assert mart["express"].tolist() == [1.0, 0.0, 1.0] and mart["limit"].isna().tolist() == [False, True, False]
    assert rebuilt == (9.0,)


@pytest.fixture
def store(tmp_path):
    """A Feast store with a file registry and an empty repository of its own."""
    from feast import FeatureStore

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(textwrap.dedent(f"""\
        project: derived_test
        registry: {tmp_path / 'registry.db'}
        provider: local
        offline_store:
          type: duckdb
        online_store:
          type: sqlite
          path: {tmp_path / 'online.db'}
        entity_key_serialization_version: 3
        """))
    return FeatureStore(repo_path=str(repo)), repo


def test_the_derived_view_and_service_are_registered_and_a_repository_s_own_service_wins(store, tmp_path):
    store, repo = store
    use_case = _use_case()
    objects = derived.feast_objects(use_case, derived.derived_features(use_case), tmp_path / "data")
    applied = feast_ops.apply_repo(store, repo, objects)
    assert applied == sorted(["card_orders__user", "fct_card_orders_features", "card_orders_features",
                              "card_orders_model"])
    view = store.get_feature_view("card_orders_features")
    assert [f.name for f in view.features] == ["limit", "items", "express", "window"]
    assert view.batch_source.path == str(tmp_path / "data" / "fct_card_orders_features.parquet")
    assert [p.name for p in store.get_feature_service("card_orders_model").feature_view_projections] == [
        "card_orders_features"]

    # The user's own service of the declared name, on the derived view but two of its inputs: theirs is kept.
    (repo / "mine.py").write_text(textwrap.dedent(f"""\
        from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
        from feast.types import Float64

        user = Entity(name="card_orders__user", join_keys=["user"], value_type=ValueType.STRING)
        source = FileSource(name="fct_card_orders_features", path="{tmp_path / 'data' / 'x.parquet'}",
                            timestamp_field="event_timestamp")
        view = FeatureView(name="card_orders_features", entities=[user], source=source, online=False,
                           schema=[Field(name="limit", dtype=Float64), Field(name="items", dtype=Float64)])
        card_orders_model = FeatureService(name="card_orders_model", features=[view])
        """))
    assert feast_ops.overridden(objects, feast_ops.load_definitions(repo)) == []
    feast_ops.apply_repo(store, repo, objects)
    assert [f.name for f in store.get_feature_view("card_orders_features").features] == ["limit", "items"]
    service = store.get_feature_service("card_orders_model")
    assert [f.name for p in service.feature_view_projections for f in p.features] == ["limit", "items"]


def test_declared_marts_need_the_use_case_s_dbt_folder_and_derived_ones_need_none(tmp_path, monkeypatch):
    from platform_assets import settings
    from platform_assets.defs.features.dbt import has_dbt_models

    monkeypatch.setenv(settings.DBT_PROJECT_ENV, str(tmp_path))
    assert has_dbt_models(_use_case()) is False  # derived: no folder wanted
    with pytest.raises(DeclarationError, match=r"marts \['fct_mine'\] are declared but the dbt project has no folder "
                                               + str(tmp_path / "models" / "card_orders")):
        has_dbt_models(_use_case(marts=("fct_mine",)))
    (tmp_path / "models" / "card_orders").mkdir(parents=True)
    assert has_dbt_models(_use_case(marts=("fct_mine",))) and has_dbt_models(_use_case())
