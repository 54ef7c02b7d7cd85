"""Alerts: one structured log line per event and, when configured, a webhook POST of the same JSON.

``PLATFORM_ALERT_WEBHOOK_URL`` (Slack-compatible incoming webhooks accept the
``text`` field). A webhook that is down or slow never fails the caller: the
error is logged and the alert stays in the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

from platform_assets import config

WEBHOOK_ENV = "PLATFORM_ALERT_WEBHOOK_URL"
KINDS = ("drift", "quality", "retrain_requested", "retrained", "gate_failed", "deployment_failed", "run_failed", "serving_down")
logger = logging.getLogger("platform.alerts")


def alert(kind: str, message: str, timeout_s: float = 2.0, **fields) -> dict:
    """Logs ``{"alert": kind, "message": ..., "at": ..., **fields}`` and posts it to the webhook if set.

    Returns:
        The alert, with ``webhook`` = ``"sent"``, ``"failed: <reason>"`` or ``"not configured"``.
    """
    record = {"alert": kind, "message": message, "at": dt.datetime.now(dt.timezone.utc).isoformat(), **fields}
    url = config.get(WEBHOOK_ENV)
    status = "not configured"
    if url:
        import requests

        try:
            response = requests.post(url, json={**record, "text": f"[{kind}] {message}"}, timeout=timeout_s)
            status = "sent" if response.status_code < 300 else f"failed: HTTP {response.status_code}"
        except requests.RequestException as exc:
            status = f"failed: {type(exc).__name__}"
    record["webhook"] = status
    logger.warning(json.dumps(record, default=str, sort_keys=True))
    return record
