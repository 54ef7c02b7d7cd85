"""Checks on the features: no training/serving skew, no label leakage, fresh features."""


import dagster as dg

from platform_assets.declarations import UseCase
from platform_assets.defs.judging import NotJudged, judged_check
from platform_assets.keys import for_use_case
from platform_assets.resources import FeatureStore, PlatformState, Warehouse
from platform_assets.sql import quoted


class SkewCheckConfig(dg.Config):
    """How many entities the skew check compares."""

    sample_size: int = 50
    seed: int = 0


class LeakageCheckConfig(dg.Config):
    """How many training rows the leakage check joins again (a random sample of every split when more)."""

    max_rows: int = 50_000
    seed: int = 0


class FeatureFreshnessConfig(dg.Config):
    """How far the features may lag behind the validated data, and the online store behind them."""

    max_feature_lag_hours: float = 24.0
    max_online_lag_hours: float = 0.0


def build_feature_checks(use_case: UseCase) -> list[dg.AssetChecksDefinition]:
    """The checks of the use case's feature store and training set."""
    keys = for_use_case(use_case)

    @judged_check(
        asset=keys.feature_store,
        blocking=True,
        description=(
            "The online store serves each sampled entity's newest offline row exactly, for every online view "
            "(a stale or half-materialized online store, or a feature missing from its answer, fails)."
        ),
    )
    def online_matches_offline(config: SkewCheckConfig, feast: FeatureStore) -> dg.AssetCheckResult | NotJudged:
        """Reads a sample of entities from the online store and compares their values with the views' sources.

        Whether the server's features then equal the point-in-time training features
        is checked on what it actually served (``monitor/inference_log``).
        """
        from platform_assets.features import consistency

        store = feast.store()
        expected = consistency.latest_offline_rows(store, use_case, config.sample_size, config.seed)
        mismatches = consistency.online_mismatches(store, expected)
        compared = sum(len(rows) for rows in expected.values())
        if compared == 0:
            return NotJudged(f"the online views {sorted(expected)} have no rows in their sources yet")
        return dg.AssetCheckResult(
            passed=mismatches.empty,
            metadata={
                "entities_compared": compared,
                "mismatches": len(mismatches),
                "examples": dg.MetadataValue.md(mismatches.head(10).to_markdown(index=False) if len(mismatches) else "none"),
            },
        )


    @judged_check(
        asset=keys.training_set,
        blocking=True,
        description="Point-in-time correct: each row's features equal its entity's newest source row as of the "
                    "row's own time, recomputed by an independent join over the views' own sources.",
    )
    def training_set_has_no_leakage(
        config: LeakageCheckConfig, state: PlatformState, feast: FeatureStore
    ) -> dg.AssetCheckResult | NotJudged:
        """Recomputes what each row may know (its own point-in-time join) and compares with the training set.

        Which labels take part (known by the cutoff) and the order of the splits are the producer's own
        rules: unit tests of ``entity_rows`` and ``split_labels`` hold them, not this check.
        """
        from platform_assets.features.consistency import point_in_time_mismatches
        from platform_assets.features.training_file import sample_split

        training, rows = sample_split(state.paths.of(use_case.name).training_set, None, config.max_rows, config.seed)
        if training.empty:
            return NotJudged("the training set has no rows")
        not_as_of = point_in_time_mismatches(feast.store(), training, use_case)
        return dg.AssetCheckResult(passed=not_as_of == 0,
                                   metadata={"features_not_as_of_row": int(not_as_of), "rows_checked": len(training),
                                             "training_set_rows": rows})


    online = bool(use_case.online_marts)

    @judged_check(
        asset=keys.feature_store,
        description="Features keep up with the validated data" + (
            " and the online store holds the newest features." if online else
            " (no online view: the online store is not judged)."),
    )
    def features_are_fresh(
        config: FeatureFreshnessConfig, state: PlatformState, warehouse: Warehouse, feast: FeatureStore
    ) -> dg.AssetCheckResult | NotJudged:
        """Warns when the newest feature is older than the newest validated row, or (for a use case with
        online views) not yet online."""
        import datetime as dt

        import duckdb

        from platform_assets.features import feast_ops
        from platform_assets.features import online_load

        exported = [str(state.paths.feast_data / f"{mart}.parquet") for mart in use_case.feature_marts]
        source = use_case.source
        with warehouse.connect(read_only=True) as con:
            newest_source = con.execute(
                f"SELECT max({quoted(source.event_time)}) FROM {source.validated_table}").fetchone()[0]
        with duckdb.connect() as con:
            newest_features = con.execute(f"SELECT max(event_timestamp) FROM read_parquet({exported})").fetchone()[0]
        if newest_source is None:
            return NotJudged(f"{source.validated_table} holds no rows yet")
        until = online_load.materialized_until(feast.store(), use_case) if online else {}
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        found = feast_ops.freshness_findings(newest_source, newest_features, until, now)
        if not online:
            found.pop("online_lag_hours", None)
        passed = (
            found["feature_lag_hours"] is not None
            and found["feature_lag_hours"] <= config.max_feature_lag_hours
            and (not online or (found["online_lag_hours"] is not None
                                and found["online_lag_hours"] <= config.max_online_lag_hours))
        )
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                **{k: (round(v, 3) if v is not None else "n/a") for k, v in found.items()},
                "newest_feature": str(newest_features),
                "online_until": dg.MetadataValue.json({k: str(v) for k, v in until.items()}),
            },
        )

    checks = [training_set_has_no_leakage, features_are_fresh]
    # A use case served from the request alone has no online store to compare.
    return [online_matches_offline, *checks] if online else checks
