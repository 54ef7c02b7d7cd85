"""Driver: materializes the model asset and SIGKILLs itself right after the model version is created.

Usage: ``python tests/integration/kill_at_registration.py STATE_ROOT RUN_CONFIG_JSON``, with
DAGSTER_HOME set (the instance that the calling test reads afterwards). The kill
comes right after MLflow's registry store commits the new version, whatever the
code calls next (tags, alias, end of run): the worst moment for registration.
Exits 3 if no version was ever created (then the kill never came).
"""

import json
import os
import signal
import sys
from pathlib import Path

# Run as a script, this file's folder is first on sys.path, not the project: put the checkout it
# belongs to first, so it runs this checkout's platform_assets (not another copy installed in the venv).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import dagster as dg  # noqa: E402
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore  # noqa: E402

from platform_assets import definitions  # noqa: E402
from platform_assets.build import build_use_case_definitions  # noqa: E402
from platform_assets.declared import use_case  # noqa: E402
from platform_assets.keys import for_use_case  # noqa: E402


def model_asset():
    """The loan-default use case's model asset, as the code location builds it."""
    key = for_use_case(use_case("loan_default")).model
    (found,) = [a for a in build_use_case_definitions(use_case("loan_default")).assets if key in a.keys]
    return found


def main(root: str, run_config: dict) -> int:
    create = SqlAlchemyStore.create_model_version

    def create_then_die(self, *args, **kwargs):
        create(self, *args, **kwargs)  # committed when this returns
        os.kill(os.getpid(), signal.SIGKILL)

    SqlAlchemyStore.create_model_version = create_then_die
    with dg.DagsterInstance.get() as instance:
        dg.materialize([model_asset()], resources=definitions.embedded_resources(root), instance=instance,
                       run_config=run_config, raise_on_error=False)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], json.loads(sys.argv[2])))
