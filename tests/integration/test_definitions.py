"""The code location loads fast and has the shape of the design's asset graph."""

import subprocess
import sys

from tests.conftest import PROJECT_ROOT

GROUPS = {
    "raw/applications": "ingest",
    "validated/applications": "validate",
    "quarantine/applications": "validate",
    "features/stg_applications": "features",
    "features/fct_application_features": "features",
    "features/fct_applicant_history": "features",
    "features/fct_applicant_activity": "features",
    "features/feature_store": "features",
    "features/training_set": "features",
    "train/model": "train",
    "evaluate/eval_report": "evaluate",
    "evaluate/champion": "evaluate",
    "deploy/deployment": "deploy",
    "monitor/inference_log": "monitor",
    "monitor/drift_report": "monitor",
    "monitor/outcomes": "monitor",
}


def test_graph_shape_groups_and_checks():
    from platform_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    specs = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    assert {k: v.group_name for k, v in specs.items() if k in GROUPS} == GROUPS
    checked = {key.asset_key.to_user_string() for key in graph.asset_check_keys}
    assert checked == set(GROUPS)  # at least one check on every asset
    for key, node in specs.items():
        if key in GROUPS:
            assert node.description, f"{key} has no description"
    lineage = {key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys} for key in graph.get_all_asset_keys()}
    assert "validated/applications" in lineage["features/stg_applications"]
    assert "features/training_set" in lineage["train/model"]
    assert "evaluate/eval_report" in lineage["evaluate/champion"]  # the alias moves after the evaluation
    assert "evaluate/champion" in lineage["deploy/deployment"]
    assert "monitor/outcomes" in lineage["features/training_set"]  # labels that arrived later train the model


def test_loading_the_code_location_imports_no_heavy_library():
    code = (
        "import sys, platform_assets.definitions; "
        "print(','.join(m for m in ('feast', 'torch', 'mlflow', 'evidently', 'sklearn', 'pandera') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
