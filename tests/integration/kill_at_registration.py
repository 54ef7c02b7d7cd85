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

import dagster as dg
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

from platform_assets import definitions
from platform_assets.train import assets as train_assets


def main(root: str, run_config: dict) -> int:
    create = SqlAlchemyStore.create_model_version

    def create_then_die(self, *args, **kwargs):
        create(self, *args, **kwargs)  # committed when this returns
        os.kill(os.getpid(), signal.SIGKILL)

    SqlAlchemyStore.create_model_version = create_then_die
    with dg.DagsterInstance.get() as instance:
        dg.materialize([train_assets.model], resources=definitions.build_resources(root), instance=instance,
                       run_config=run_config, raise_on_error=False)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], json.loads(sys.argv[2])))
