"""Command line: generate sample data, show where state lives, list landed days, trace a prediction's lineage,
roll back a release and clear a rollback."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from platform_assets import settings


def _generate(args: argparse.Namespace) -> int:
    """Writes each declared use case's sample landing files (its ``sample_data`` function)."""
    from platform_assets.declarations import import_object
    from platform_assets.declared import use_case, use_cases

    start = dt.date.fromisoformat(args.start) if args.start else dt.date.today() - dt.timedelta(days=args.days)
    chosen = [use_case(args.use_case)] if args.use_case else [u for u in use_cases() if u.sample_data]
    options = {k: v for k, v in (("file_format", args.format), ("scenario", args.scenario),
                                 ("dirty_fraction", args.dirty_fraction)) if v is not None}
    for declared in chosen:
        if not declared.sample_data:
            print(f"{declared.name} declares no sample_data", file=sys.stderr)
            return 1
        write = import_object(declared.sample_data, f"use case {declared.name}: sample_data")
        landing = settings.paths().landing / declared.source.landing_folder
        try:
            rows = write(landing, start, args.days, args.rows_per_day, args.seed, **options)
        except TypeError as exc:  # an option this use case's generator does not take
            print(f"{declared.name}: {exc}", file=sys.stderr)
            return 1
        print(f"{declared.name}: wrote {rows} rows in {args.days} daily files to {landing}")
    from platform_assets.ingest.landing import record_first_landed_day
    from platform_assets.ingest.partitions import PARTITIONS_START_ENV

    recorded = record_first_landed_day(str(settings.paths().landing))
    if recorded:
        print(f"daily partitions start on {recorded[0]} (recorded in {recorded[1]}; {PARTITIONS_START_ENV} overrides it)")
    return 0


def _config(args: argparse.Namespace) -> int:
    """Prints every setting's effective value (secrets masked) and where it came from; exits 1 when the profile
    lacks a setting it needs. ``--markdown``: the table of docs/configuration.md."""
    from platform_assets import config
    from platform_assets.where import configuration_text

    if args.markdown:
        print(config.markdown_table())
        return 0
    text, lacking = configuration_text()
    print(text)
    if lacking:
        print(lacking, file=sys.stderr)
        return 1
    return 0


def _where(_: argparse.Namespace) -> int:
    from platform_assets.where import where_text

    print(where_text())
    return 0


def _stop_serving(_: argparse.Namespace) -> int:
    """Stops every declared use case's router, model servers and feature servers under the state root."""
    from platform_assets.declared import use_cases
    from platform_assets.deploy.release import stop_serving

    for use_case in use_cases():
        stopped = stop_serving(settings.paths().of(use_case.name).serving)
        print(f"{use_case.name}: stopped {', '.join(stopped) if stopped else 'nothing (none was running)'}")
    return 0


def _resume_serving(_: argparse.Namespace) -> int:
    """Starts each use case's supervisord again where it is not running (after its own death or a reboot):
    it starts the router and the versions the last release left configured, on their ports."""
    from platform_assets.declared import use_cases
    from platform_assets.deploy.supervision import Supervisor

    for use_case in use_cases():
        supervisor = Supervisor(settings.paths().of(use_case.name).serving)
        if not supervisor.configured():
            print(f"{use_case.name}: nothing was serving")
            continue
        running = supervisor.running()
        supervisor.ensure()
        print(f"{use_case.name}: supervisord {'was running' if running else 'started again'}; "
              f"`supervisorctl -c {supervisor.dir / 'supervisord.conf'} status` shows its programs")
    return 0


def _use_cases(_: argparse.Namespace) -> int:
    from platform_assets.declared import use_cases

    for use_case in use_cases():
        print(use_case.name)
    return 0


def _infer_schema(args: argparse.Namespace) -> int:
    from pathlib import Path

    from platform_assets.ingest.landing import read_sample
    from platform_assets.validate.infer import propose_columns, render_model

    sample = read_sample(args.file, args.rows)
    source = render_model(propose_columns(sample), args.name, Path(args.file).name)
    if args.out:
        Path(args.out).write_text(source)
        print(f"wrote a proposed model of {len(sample.columns)} columns ({len(sample)} sample rows) to {args.out}")
    else:
        print(source)
    return 0


def _landing_days(args: argparse.Namespace) -> int:
    from platform_assets import config
    from platform_assets.declared import use_cases
    from platform_assets.ingest.landing import list_landing_files, partition_of, source_landing_url
    from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS

    url = config.get("LANDING_URL") or str(settings.paths().landing)
    sources = {u.source for u in use_cases() if not args.use_case or u.name == args.use_case}
    if not sources:
        print(f"no use case {args.use_case!r} declared", file=sys.stderr)
        return 1
    days = sorted({d for s in sources for u in list_landing_files(source_landing_url(url, s))
                   if (d := partition_of(u, s)) and DAILY_PARTITIONS.has_partition_key(d)})
    if not days:
        print(f"no landing files of any day under {url}; run `make data` first", file=sys.stderr)
        return 1
    print(days[-1] if getattr(args, "last", False) else f"{days[0]}...{days[-1]}")
    return 0


def _traffic(args: argparse.Namespace) -> int:
    """Sends one validated day's rows to each deployed use case's server, as its callers would."""
    from platform_assets.declared import use_case, use_cases
    from platform_assets.traffic import replay_day

    answered = True
    for declared in [use_case(args.use_case)] if args.use_case else use_cases():
        text, result = replay_day(declared, args.day, args.concurrency)
        print(text)
        answered &= result.answered > 0
    return 0 if answered else 1


def _lineage(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from platform_assets.lineage import PredictionNotFound, format_trace, trace_model, trace_request

    if bool(args.request_id) == bool(args.model) or bool(args.model) != bool(args.version):
        print("lineage: give a request id, or --model NAME --version N", file=sys.stderr)
        return 2
    try:
        if args.model:
            trace = trace_model(settings.paths(), args.model, args.version)
        else:
            trace = trace_request(settings.paths(), args.request_id)
    except (PredictionNotFound, LookupError, MlflowException) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(format_trace(trace))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    """Runs ``<use case>__rollback``: the version that served before returns to the stable endpoint."""
    from platform_assets import launch

    return launch.main(["--job", f"{args.use_case}__rollback"])


def _clear_rollback(args: argparse.Namespace) -> int:
    """Clears a version's rollback mark: it, and retrained versions with its weights, may pass the gate again."""
    import getpass

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from platform_assets.declared import use_case
    from platform_assets.train.registry import clear_rollback

    try:
        name = use_case(args.use_case).model_name
        record = clear_rollback(MlflowClient(settings.mlflow_tracking_uri()), name, args.version,
                                args.by or getpass.getuser())
    except (ValueError, MlflowException) as exc:  # an undeclared use case, a version not rolled back or unknown
        print(exc, file=sys.stderr)
        return 1
    print(f"{name} version {args.version}: rollback cleared by {record}; it and identical weights face the gate again")
    return 0


def _loop(args: argparse.Namespace) -> int:
    """Runs a use case's closed-loop simulation on the state root (its ``platform_assets.use_cases.<name>.loop``)."""
    import importlib

    from platform_assets import config
    from platform_assets.ingest.partitions import record_partitions_start

    config_args = dict(history_days=args.history_days, live_days=args.live_days, rows_per_day=args.rows_per_day,
                       drift_day=None if args.no_drift else args.drift_day, seed=args.seed,
                       label_delay_days=tuple(args.label_delay_days), concurrency=args.concurrency)
    start = dt.date.today() - dt.timedelta(days=args.history_days + args.live_days + 1)
    if not config.is_set("PLATFORM_PARTITIONS_START"):
        record_partitions_start(start.isoformat())  # before the definitions load: their partitions start there
    # The loop shows drift-triggered retraining: retraining on label counts waits for more labels than it sends.
    if not config.is_set("PLATFORM_RETRAIN_MIN_NEW_LABELS"):
        config.export("PLATFORM_RETRAIN_MIN_NEW_LABELS", str(10 * args.rows_per_day * args.live_days))
    import dagster as dg

    from platform_assets import definitions

    try:
        loop = importlib.import_module(f"platform_assets.use_cases.{args.use_case}.loop")
    except ModuleNotFoundError:
        print(f"use case {args.use_case!r} ships no closed-loop simulation (platform_assets/use_cases/"
              f"{args.use_case}/loop.py)", file=sys.stderr)
        return 1
    config = loop.LoopConfig(**config_args)
    root = settings.paths().root
    settings.prepare_dagster_home()
    instance = dg.DagsterInstance.get()
    defs = None if args.daemon else definitions.build_definitions(definitions.build_resources())
    print(f"closed loop under {root} (Dagster instance {instance.root_directory}); "
          f"{'the running daemon' if args.daemon else 'automation ticked in this process'} reacts")
    reports, _ = loop.simulate(config, root, instance, defs, start, log_level=args.log_level)
    if hasattr(loop, "timeline_text"):
        print("\n" + loop.timeline_text(reports))
    served = {r.serving_version for r in reports}
    print(f"{len(reports)} live days; versions served: {', '.join(sorted(served, key=str))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m platform_assets`` and the ``platform-assets`` script."""
    parser = argparse.ArgumentParser(prog="platform-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write each use case's sample landing files (one per day)")
    gen.add_argument("--use-case", help="one declared use case (default: every one that declares sample_data)")
    gen.add_argument("--days", type=int, default=60)
    gen.add_argument("--rows-per-day", type=int, default=1000)
    gen.add_argument("--start", help="first day, YYYY-MM-DD (default: DAYS days ago)")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--scenario", choices=["none", "covariate", "concept"],
                     help="drift scenario (for generators that offer one)")
    gen.add_argument("--dirty-fraction", type=float, help="share of rows made invalid on purpose")
    gen.add_argument("--format", choices=["parquet", "csv"], help="file format (default: the generator's)")
    gen.set_defaults(func=_generate)
    commands.add_parser("where", help="print where to look: UIs, reports, endpoint").set_defaults(func=_where)
    shown = commands.add_parser("config", help="print the effective configuration (secrets masked)")
    shown.add_argument("--markdown", action="store_true", help="the table of docs/configuration.md")
    shown.set_defaults(func=_config)
    commands.add_parser("stop-serving", help="stop every use case's model and feature servers").set_defaults(
        func=_stop_serving)
    commands.add_parser("resume-serving", help="start serving again after a reboot or a dead supervisord").set_defaults(
        func=_resume_serving)
    commands.add_parser("use-cases", help="print the declared use cases' names, one per line").set_defaults(
        func=_use_cases)
    infer = commands.add_parser("infer-schema", help="propose a pandera model from a sample file, for review")
    infer.add_argument("file", help="a .csv, .parquet or .jsonl sample")
    infer.add_argument("--name", default="ProposedSchema", help="class name of the model")
    infer.add_argument("--rows", type=int, default=100_000, help="sample at most this many rows")
    infer.add_argument("--out", help="write the module here instead of printing it")
    infer.set_defaults(func=_infer_schema)
    days = commands.add_parser(
        "landing-days", help="print FIRST...LAST, the range of days with landing files (for --partition-range)"
    )
    days.add_argument("--last", action="store_true", help="print only the last day")
    days.add_argument("--use-case", help="only this use case's source (default: every declared source)")
    days.set_defaults(func=_landing_days)
    traffic = commands.add_parser("traffic", help="send a validated day's rows to each server as callers do")
    traffic.add_argument("--day", help="YYYY-MM-DD (default: the newest validated day)")
    traffic.add_argument("--use-case", help="one declared use case (default: every one)")
    traffic.add_argument("--concurrency", type=int, default=8)
    traffic.set_defaults(func=_traffic)
    lin = commands.add_parser(
        "lineage", help="trace a served prediction (its request id) back to its model, features and landing files"
    )
    lin.add_argument("request_id", nargs="?", help="the request id the server answered with (meta.puid) and logged")
    lin.add_argument("--model", help="instead of a request: a registered model's name (with --version)")
    lin.add_argument("--version", help="the registered version of --model")
    lin.set_defaults(func=_lineage)
    back = commands.add_parser("rollback", help="serve the previous approved version again (and make it champion)")
    back.add_argument("--use-case", required=True, help="the declared use case")
    back.set_defaults(func=_rollback)
    clear = commands.add_parser(
        "clear-rollback", help="let a rolled-back version (and retrained identical weights) through the gate again")
    clear.add_argument("--use-case", required=True, help="the declared use case")
    clear.add_argument("--version", required=True, help="the rolled-back model version")
    clear.add_argument("--by", help="who clears it (default: the login name)")
    clear.set_defaults(func=_clear_rollback)
    lp = commands.add_parser("loop", help="simulate live days of traffic, drift and the platform's own retraining")
    lp.add_argument("--use-case", required=True, help="a use case that ships a simulation (e.g. its loop.py)")
    lp.add_argument("--history-days", type=int, default=35)
    lp.add_argument("--live-days", type=int, default=12)
    lp.add_argument("--rows-per-day", type=int, default=500)
    lp.add_argument("--drift-day", type=int, default=4, help="live day (0-based) from which the concept drifts")
    lp.add_argument("--no-drift", action="store_true", help="no drift: nothing should be retrained")
    lp.add_argument("--label-delay-days", type=int, nargs=2, default=[1, 2], metavar=("MIN", "MAX"))
    lp.add_argument("--concurrency", type=int, default=8, help="requests in flight at most")
    lp.add_argument("--seed", type=int, default=11)
    lp.add_argument("--log-level", default="ERROR", help="console log of the runs (the UI keeps every event)")
    lp.add_argument("--daemon", action="store_true",
                    help="leave the work to the running dagster-daemon (`make ui`) instead of ticking in process")
    lp.set_defaults(func=_loop)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
