"""Command line: generate sample data, show where state lives, list landed days, trace a prediction's lineage."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from platform_assets import settings


def _generate(args: argparse.Namespace) -> int:
    from platform_assets.sample_data.generator import GeneratorConfig, generate_applications, write_landing_files

    start = dt.date.fromisoformat(args.start) if args.start else dt.date.today() - dt.timedelta(days=args.days)
    config = GeneratorConfig(
        start_date=start,
        days=args.days,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
        scenario=args.scenario,
        dirty_fraction=args.dirty_fraction,
    )
    df = generate_applications(config)
    landing = settings.paths().landing
    written = write_landing_files(df, landing, args.format)
    print(f"wrote {len(df)} applications in {len(written)} files to {landing} (scenario: {args.scenario})")
    _record_first_landed_day(str(landing))
    return 0


def _record_first_landed_day(landing_url: str) -> None:
    """Makes the daily partitions start at the first day that has a landing file (earlier files included)."""
    from platform_assets.ingest.landing import list_landing_files, partition_of
    from platform_assets.ingest.partitions import PARTITIONS_START_ENV, record_partitions_start

    days = sorted(d for u in list_landing_files(landing_url) if (d := partition_of(u)))
    if days:
        path = record_partitions_start(days[0])
        print(f"daily partitions start on {days[0]} (recorded in {path}; {PARTITIONS_START_ENV} overrides it)")


def _where(_: argparse.Namespace) -> int:
    paths = settings.paths()
    print(
        f"""State root ({settings.STATE_ROOT_ENV}): {paths.root}
  Dagster UI:        make ui            (dagster dev -w workspace.yaml, http://127.0.0.1:3000)
  MLflow UI:         make mlflow-ui     (mlflow ui --backend-store-uri {settings.mlflow_tracking_uri()} -p 5000)
  Evaluation report: {paths.reports / 'eval' / 'eval_report.md'}
  Drift report:      {paths.reports / 'drift' / 'drift_report.html'}
  Warehouse:         {paths.warehouse}
  Feast online store:{paths.feast / 'online_store.db'}"""
    )
    deployment = paths.serving / "deployment.json"
    if deployment.exists():
        record = json.loads(deployment.read_text())
        print(f"  Serving endpoint:  {record['url']}/api/v1.0/predictions ({record['model_name']} v{record['model_version']})")
        if record.get("feature_server_url"):
            print(f"  Feature server:    {record['feature_server_url']}/get-online-features (feast serve)")
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


def _landing_days(_: argparse.Namespace) -> int:
    import os

    from platform_assets.ingest.landing import list_landing_files, partition_of
    from platform_assets.ingest.partitions import DAILY_PARTITIONS

    url = os.environ.get("LANDING_URL") or str(settings.paths().landing)
    days = sorted({d for u in list_landing_files(url) if (d := partition_of(u)) and DAILY_PARTITIONS.has_partition_key(d)})
    if not days:
        print(f"no landing files of any day under {url}; run `make data` first", file=sys.stderr)
        return 1
    print(f"{days[0]}...{days[-1]}")
    return 0


def _lineage(args: argparse.Namespace) -> int:
    from platform_assets.lineage import trace_prediction

    print(json.dumps(trace_prediction(settings.paths(), args.application_id), indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m platform_assets`` and the ``platform-assets`` script."""
    parser = argparse.ArgumentParser(prog="platform-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="write sample landing files (one per day)")
    gen.add_argument("--days", type=int, default=60)
    gen.add_argument("--rows-per-day", type=int, default=1000)
    gen.add_argument("--start", help="first day, YYYY-MM-DD (default: DAYS days ago)")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--scenario", choices=["none", "covariate", "concept"], default="none")
    gen.add_argument("--dirty-fraction", type=float, default=0.005)
    gen.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    gen.set_defaults(func=_generate)
    commands.add_parser("where", help="print where to look: UIs, reports, endpoint").set_defaults(func=_where)
    infer = commands.add_parser("infer-schema", help="propose a pandera model from a sample file, for review")
    infer.add_argument("file", help="a .csv, .parquet or .jsonl sample")
    infer.add_argument("--name", default="ProposedSchema", help="class name of the model")
    infer.add_argument("--rows", type=int, default=100_000, help="sample at most this many rows")
    infer.add_argument("--out", help="write the module here instead of printing it")
    infer.set_defaults(func=_infer_schema)
    commands.add_parser(
        "landing-days", help="print FIRST...LAST, the range of days with landing files (for --partition-range)"
    ).set_defaults(func=_landing_days)
    lin = commands.add_parser("lineage", help="trace a served prediction back to its model and raw file")
    lin.add_argument("application_id")
    lin.set_defaults(func=_lineage)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
