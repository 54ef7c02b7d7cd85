"""The watch on a use case's local endpoint: its supervisord comes back after its own death or a reboot."""

import dagster as dg

from platform_assets.declarations import UseCase
from platform_assets.resources import PlatformState

WATCH_INTERVAL_S = 30


def build_serving_watch_sensor(use_case: UseCase) -> dg.SensorDefinition:
    """``<use case>__serving_supervised``: starts the endpoint's supervisord again when it is not running.

    supervisord restarts a dead router, model server or feature server; nothing restarts supervisord
    itself when it is killed or the machine reboots. While the Dagster daemon runs, this sensor does:
    the programs the last release configured start again on their ports (what the dead supervisord
    left running is stopped first). A folder with no supervised program (nothing released, ``make
    stop-serving``, or the Kubernetes target) has nothing to watch. A program supervisord gave up on
    (it died at every start: a broken bundle or environment) is alerted (``serving_down``), once.
    It launches no run.
    """

    @dg.sensor(
        name=f"{use_case.name}__serving_supervised",
        minimum_interval_seconds=WATCH_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Starts the local endpoint's supervisord again after its death or a reboot (no re-release).",
    )
    def serving_supervised(context: dg.SensorEvaluationContext, state: PlatformState):
        from platform_assets.deploy.supervision import SupervisionError, Supervisor

        from platform_assets.alerts import alert

        supervisor = Supervisor(state.paths.of(use_case.name).serving)
        if not supervisor.configured():
            context.update_cursor(None)
            return dg.SkipReason("nothing is served from this machine (no supervised program)")
        if supervisor.running():
            given_up = supervisor.given_up()
            if given_up and ",".join(given_up) != (context.cursor or ""):  # alerted once per change
                alert("serving_down", f"{use_case.name}: {', '.join(given_up)} died at every start and is no longer "
                      f"restarted; read its log under {supervisor.serving_dir / 'logs'}, fix the cause and "
                      "release again", use_case=use_case.name, programs=given_up)
            context.update_cursor(",".join(given_up) or None)
            if given_up:
                return dg.SkipReason(f"supervisord gave up on {', '.join(given_up)} (it died at every start)")
            return dg.SkipReason("supervisord runs; it restarts any server of the endpoint that dies")
        try:
            supervisor.ensure()
        except (OSError, SupervisionError) as exc:
            context.log.error(f"{use_case.name}: supervisord could not be started again: {exc}")
            return dg.SkipReason(f"supervisord is not running and could not be started again: {exc}")
        context.log.warning(f"{use_case.name}: supervisord was not running; started again with the router and the "
                            f"versions the last release configured (logs under {supervisor.serving_dir / 'logs'})")
        return dg.SkipReason("supervisord was not running: started again")

    return serving_supervised
