"""Checks on a source's raw rows: every file found was read or rejected, read whole, and recently.

Each check looks at the days of the run it belongs to (every day when a check
runs on its own).
"""


import dagster as dg

from platform_assets.declarations import UseCase
from platform_assets.keys import for_use_case
from platform_assets.defs.ingest.partitions import DAILY_PARTITIONS, run_partition_keys
from platform_assets.ingest.partitions import PARTITION_COLUMN, partition_filter
from platform_assets.resources import Landing, Warehouse


class FreshnessConfig(dg.Config):
    """How long after a day ends its partition may still be missing before the data counts as stale."""

    max_age_hours: float = 48.0


def build_raw_checks(use_case: UseCase) -> list[dg.AssetChecksDefinition]:
    """The checks of ``<use case>/raw/<source>``."""
    raw, source = for_use_case(use_case).raw, use_case.source

    @dg.asset_check(
        asset=raw,
        blocking=True,
        description=(
            "Every landing file found now for the run's days is recorded (read or rejected), and a run that found "
            "files read rows from them; days without rows warn."
        ),
    )
    def landing_files_found_were_read(
        context: dg.AssetCheckExecutionContext, landing: Landing, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        """Lists the landing folder itself and compares what it finds with what the raw tables recorded.

        Fails (blocking) when a file found is in neither the source's landing-files
        table nor its rejected-files table, or when files were found but no row was read from
        them (every name wrong, every file rejected): the reasons name the files and
        the expected name pattern. Warns when some of the run's days read no rows.
        """
        from platform_assets.ingest.landing import list_landing_files, partition_of, source_landing_url

        keys = run_partition_keys(context)
        urls = list_landing_files(source_landing_url(landing.url, source))
        day_of = {u: partition_of(u, source) for u in urls}
        placed = [u for u in urls if day_of[u] is not None and DAILY_PARTITIONS.has_partition_key(day_of[u])]
        found = [u for u in placed if keys is None or day_of[u] in keys]
        unplaced = [u for u in urls if u not in placed]
        where, params = partition_filter(keys)
        with warehouse.connect(read_only=True) as con:
            read = {r[0] for r in con.execute(f"SELECT path FROM {source.landing_files_table} WHERE {where}",
                                              params).fetchall()}
            rejected = dict(con.execute(
                f"SELECT path, error FROM {source.rejected_files_table} WHERE {where} OR {PARTITION_COLUMN} IS NULL",
                params,
            ).fetchall())
            rows_by_day = dict(con.execute(
                f"SELECT {PARTITION_COLUMN}, count(*) FROM {source.raw_table} WHERE {where} GROUP BY 1", params
            ).fetchall())
        lost = [u for u in (*found, *unplaced) if u not in read and u not in rejected]
        rows = sum(rows_by_day.values())
        problems = [f"{u}: found in the landing folder but neither read nor rejected" for u in lost]
        if rows == 0 and (found or unplaced):
            problems.append(f"{len(found) + len(unplaced)} file(s) found, 0 rows read from them:")
            problems += [f"  {rejected.get(u, u)}" for u in (*found, *unplaced)]
        empty_days = sorted(set(keys) - set(rows_by_day)) if keys is not None else []
        severity = dg.AssetCheckSeverity.ERROR if problems else dg.AssetCheckSeverity.WARN
        if empty_days and not problems:
            problems.append(f"{len(empty_days)} of the run's {len(keys)} day(s) read no rows: "
                            f"{', '.join(empty_days[:10])}{' ...' if len(empty_days) > 10 else ''}")
        return dg.AssetCheckResult(
            passed=not problems,
            severity=severity,
            description="; ".join(problems[:3])[:1000] if problems else None,
            metadata={
                "files_found": len(found),
                "files_fitting_no_day": len(unplaced),
                "files_read": len(read),
                "rows_read": rows,
                "days_without_rows": len(empty_days),
                "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
            },
        )


    @dg.asset_check(
        asset=raw,
        blocking=True,
        description="Each file was read whole: its rows recounted from its bytes now = its rows in the raw table.",
    )
    def landing_files_read_whole(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        """Recounts every recorded file's rows without the reader's parser and compares with the table."""
        import hashlib

        from platform_assets.ingest.landing import count_file_rows, read_bytes

        where, params = partition_filter(run_partition_keys(context), f"f.{PARTITION_COLUMN}")
        with warehouse.connect(read_only=True) as con:
            loaded = con.execute(
                f"""
                SELECT f.path, f.sha256, count(a._source_file) AS loaded
                FROM {source.landing_files_table} f LEFT JOIN {source.raw_table} a ON a._source_file = f.path
                WHERE {where} GROUP BY f.path, f.sha256 ORDER BY f.path
                """,
                params,
            ).fetchall()
        differing, counted_rows = {}, 0
        for path, sha256, rows in loaded:
            try:
                content = read_bytes(path)
            except FileNotFoundError:
                differing[path] = "gone from the landing folder since it was read: cannot recount"
                continue
            if hashlib.sha256(content).hexdigest() != sha256:
                differing[path] = "changed since it was read (content hash differs): ingest the day again"
                continue
            try:
                counted = count_file_rows(path, content)
            except (ValueError, UnicodeDecodeError) as exc:
                differing[path] = f"cannot be recounted: {exc}"
                continue
            counted_rows += counted
            if counted != rows:
                differing[path] = f"{counted} rows in the file, {rows} in {source.raw_table}"
        return dg.AssetCheckResult(
            passed=not differing,
            metadata={"files": len(loaded), "rows_counted_in_files": counted_rows,
                      "rows_in_table": int(sum(r[2] for r in loaded)), "files_not_whole": len(differing),
                      "differing_files": dg.MetadataValue.json(differing)},
        )


    @dg.asset_check(
        asset=raw,
        description="Every landing file was accepted; rejected files are listed with their errors.",
    )
    def landing_files_all_accepted(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> dg.AssetCheckResult:
        """Warns (does not block) when files were rejected: the accepted ones still flow on."""
        where, params = partition_filter(run_partition_keys(context))
        with warehouse.connect(read_only=True) as con:
            rejected = con.execute(
                f"SELECT path, error FROM {source.rejected_files_table} WHERE {where} OR {PARTITION_COLUMN} IS NULL "
                "ORDER BY path",
                params,
            ).fetchall()
            accepted = con.execute(f"SELECT count(*) FROM {source.landing_files_table} WHERE {where}", params).fetchone()[0]
        return dg.AssetCheckResult(
            passed=not rejected,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "accepted_files": accepted,
                "rejected_files": len(rejected),
                "errors": dg.MetadataValue.md("\n".join(f"- {error}" for _, error in rejected) or "none"),
            },
        )


    @dg.asset_check(
        asset=raw,
        description="The latest day in the warehouse ended recently: landing files keep arriving (warns when stale).",
    )
    def latest_day_fresh(config: FreshnessConfig, warehouse: Warehouse) -> dg.AssetCheckResult:
        """Compares the end of the latest ingested day (partition) with now."""
        import datetime as dt

        with warehouse.connect(read_only=True) as con:
            latest = con.execute(f"SELECT max({PARTITION_COLUMN}) FROM {source.raw_table}").fetchone()[0]
        now = dt.datetime.now(dt.timezone.utc)
        if latest is None:
            age_hours = float("inf")
        else:
            day_end = dt.datetime.fromisoformat(latest).replace(tzinfo=dt.timezone.utc) + dt.timedelta(days=1)
            age_hours = max(0.0, (now - day_end).total_seconds() / 3600)
        return dg.AssetCheckResult(
            passed=age_hours <= config.max_age_hours,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"latest_partition": str(latest), "hours_since_its_end": age_hours, "max_age_hours": config.max_age_hours},
        )

    return [landing_files_found_were_read, landing_files_read_whole, landing_files_all_accepted, latest_day_fresh]
