"""What the daemon would start when the UI is opened on a finished platform: every sensor ticked twice with a
fresh cursor (as on a daemon's first start), and the automation conditions evaluated twice from no cursor.

Prints one JSON object: the run requests of each sensor and the assets automation asks for. Run as a process
with the platform's environment (``tests/services/test_prod_profile.py``).
"""

import json
import time

import dagster as dg

from platform_assets import definitions


def main() -> None:
    defs = definitions.defs
    repo = defs.get_repository_def()
    requested = {}
    with dg.DagsterInstance.get() as instance:
        for sensor in repo.sensor_defs:
            if isinstance(sensor, dg.AutomationConditionSensorDefinition):
                continue
            resources = {k: defs.resources[k] for k in sensor.required_resource_keys}
            cursor, asked = None, []
            for _ in range(2):  # files settle over two ticks: the second tick is the one that would launch
                context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                                  resources=resources)
                result = sensor.evaluate_tick(context)
                cursor = result.cursor
                asked += [{"job": r.job_name, "partition": r.partition_key, "tags": dict(r.tags),
                           "assets": [k.to_user_string() for k in r.asset_selection or []]}
                          for r in result.run_requests or []]
                time.sleep(1)
            requested[sensor.name] = asked
        cursor = None
        automated = []
        for _ in range(2):
            result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
            cursor = result.cursor
            automated += [r.key.to_user_string() for r in result.results if r.true_subset.size > 0]
        requested["platform_automation"] = automated
    print(json.dumps(requested))


if __name__ == "__main__":
    main()
