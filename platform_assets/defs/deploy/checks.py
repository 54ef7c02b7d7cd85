"""Checks on the deployment: served predictions equal the offline ones, served features the SDK's."""


import dagster as dg

from platform_assets.declarations import UseCase
from platform_assets.defs.deploy.assets import latest_deployment
from platform_assets.keys import for_use_case
from platform_assets.defs.judging import NotJudged, judged_check
from platform_assets.resources import FeatureStore, PlatformState, Warehouse
from platform_assets.sql import quoted


class ServedCheckConfig(dg.Config):
    """How many of the newest day's rows are sent to the server as callers send them, and how close its
    answers must be to the offline (batch) scores of the same rows."""

    rows: int = 50
    tolerance: float = 1e-5


class ServedFeaturesConfig(dg.Config):
    """How many recent rows' online entities the feature server is asked about."""

    entities: int = 100


def build_deployment_checks(use_case: UseCase) -> list[dg.AssetChecksDefinition]:
    """The checks of ``<use case>/deploy/deployment``."""
    keys = for_use_case(use_case)

    @judged_check(
        asset=keys.deployment,
        blocking=True,
        description="The newest day's rows, sent as callers send them (ids, own fields and time: the server looks "
                    "up and computes the rest), are answered as the batch scoring scores them offline with "
                    "point-in-time features (1e-5); not judged without such rows.",
    )
    def served_predictions_match_offline(
        context: dg.AssetCheckExecutionContext, config: ServedCheckConfig, state: PlatformState,
        warehouse: Warehouse, feast: FeatureStore,
    ) -> dg.AssetCheckResult | NotJudged:
        """Serves a sample of the newest validated day through the real lookup and compares with ``score_rows``.

        Unlike the release's smoke test (every model input sent, the bundle's own forward pass), the served
        side here computes its request features from the online store, and the offline side reads Feast's
        point-in-time join of the dbt marts: skew between the two paths fails it.
        """
        import numpy as np

        from platform_assets.deploy.batch import score_rows
        from platform_assets.deploy.release import caller_rows
        from platform_assets.deploy.serving import predict_over_http
        from platform_assets.ingest.partitions import PARTITION_COLUMN
        from platform_assets.train.network import load_bundle
        from platform_assets.warehouse import table_names

        record = latest_deployment(context.instance, keys.deployment)
        bundle = load_bundle(record["bundle"])
        source, key = use_case.source, use_case.source.key
        with warehouse.connect(read_only=True) as con:
            if source.validated_table not in table_names(con):
                return NotJudged("no validated rows yet")
            rows = con.execute(
                f"SELECT * FROM {source.validated_table} WHERE {PARTITION_COLUMN} = "
                f"(SELECT max({PARTITION_COLUMN}) FROM {source.validated_table}) ORDER BY hash({quoted(key)}) LIMIT ?",
                [config.rows]).df()
        if rows.empty:
            return NotJudged("the validated table holds no rows")
        carry = () if key in use_case.entity_keys else (key,)  # score_rows returns the entity keys already
        offline = score_rows(rows, bundle, feast.store(), use_case, record["model_version"], carry=carry)
        offline = offline[offline["probability"].notna()]
        if offline.empty:
            return NotJudged(f"the feature store holds no features for the newest day's {len(rows)} rows yet")
        rows = rows[rows[key].isin(offline[key])]
        sent = [{**row, source.event_time: event}
                for row, event in zip(caller_rows(rows, use_case, bundle.preprocessor), rows[source.event_time])]
        # Straight to the serving version, marked as the platform's own traffic: a check's requests never
        # land in the production inference log (the router would drop the mark from a caller).
        served, meta = predict_over_http(record.get("backend_url") or record["url"], sent, platform_traffic="smoke")
        expected = offline.set_index(offline[key].astype(str))["probability"].reindex(rows[key].astype(str))
        differences = np.abs(np.asarray(served, dtype=float) - expected.to_numpy())
        version = str(meta.get("tags", {}).get("model_version"))
        worst = int(np.argmax(differences))
        return dg.AssetCheckResult(
            passed=len(served) == len(sent) and float(differences.max()) <= config.tolerance
                   and version == str(record["model_version"]),
            metadata={"rows": len(sent), "day": str(rows[PARTITION_COLUMN].iloc[0]),
                      "max_abs_difference": float(differences.max()), "served_model_version": version,
                      "worst_row": str(rows[key].iloc[worst]), "worst_served": float(served[worst]),
                      "worst_offline": float(expected.iloc[worst])},
        )


    @dg.asset_check(
        asset=keys.deployment,
        blocking=True,
        description="Features fetched from the feature server over HTTP equal those of the Feast SDK, exactly.",
    )
    def served_features_match_sdk(
        context: dg.AssetCheckExecutionContext, config: ServedFeaturesConfig, feast: FeatureStore
    ) -> dg.AssetCheckResult:
        """Asks the feature server and the SDK about the same entities and compares every value.

        These are the values the model server reads for each request (the use case's online feature service).
        """
        import pandas as pd

        from platform_assets.deploy.feature_server import differing_values, online_features_over_http
        from platform_assets.features.consistency import latest_offline_rows

        record = latest_deployment(context.instance, keys.deployment)
        store = feast.store()
        sampled = next(iter(latest_offline_rows(store, use_case, config.entities).values()))
        join_keys = [c for c in sampled.columns if c in {k for v in store.get_feature_service(
            use_case.online_feature_service).feature_view_projections for k in
            [e.name for e in store.get_feature_view(v.name).entity_columns]}]
        rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in zip(join_keys, r)}
                for r in sampled[join_keys].itertuples(index=False)]
        entities = {k: [r[k] for r in rows] for k in join_keys}
        served = online_features_over_http(record["feature_server_url"], use_case.online_feature_service, entities)
        service = store.get_feature_service(use_case.online_feature_service)
        sdk = pd.DataFrame(store.get_online_features(features=service, entity_rows=rows).to_dict())
        differing = differing_values(served, sdk)
        return dg.AssetCheckResult(
            passed=differing == 0 and len(sdk) == len(rows),
            metadata={"entities": len(rows), "served_rows": len(served), "sdk_rows": len(sdk),
                      "differing_values": -1 if differing is None else differing,
                      "same_columns": set(served.columns) == set(sdk.columns)},
        )

    # Built only for a use case whose server reads online features: otherwise there is nothing to compare.
    return [served_predictions_match_offline, *([served_features_match_sdk] if use_case.online_feature_service else [])]
