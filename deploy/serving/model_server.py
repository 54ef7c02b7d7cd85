"""Serves a Seldon Core 1.x model class over REST, bound where it is told and hard to stall.

``seldon-core-microservice`` 1.17.1 binds its REST, gRPC and metrics sockets to
0.0.0.0 (hard-coded) and runs one sync gunicorn worker by default, which one idle
client stalls. This launcher serves the same model class with Seldon's own REST app
and message functions (same routes, JSON and ``meta.tags``; Seldon's metrics app on
its own port) but binds ``--host`` (default 127.0.0.1), runs several gunicorn workers
that answer the prediction route on an event loop, park idle connections and give
each request a deadline (:mod:`seldon_worker`), and starts no gRPC server: nothing in
the platform speaks gRPC.

Run from the serving environment, with this directory on ``PYTHONPATH``::

    python model_server.py PlatformModel --http-port 9000 [--host 0.0.0.0] [--metrics-port 6000]

Settings also come from the environment (as in Seldon's container contract):
``SERVING_HOST``, ``PREDICTIVE_UNIT_HTTP_SERVICE_PORT``,
``PREDICTIVE_UNIT_METRICS_SERVICE_PORT``, ``PREDICTIVE_UNIT_PARAMETERS``,
``GUNICORN_WORKERS``, ``GUNICORN_THREADS``, ``GUNICORN_KEEPALIVE``,
``SERVING_READ_TIMEOUT_S``, ``SERVING_MAX_BODY_MB``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import multiprocessing
import os
import sys
from functools import partial

from platform_assets import config
from seldon_worker import STABLE_CONTROL, SeldonProtocolWorker

logger = logging.getLogger("model_server")
WORKER_CLASS = f"{SeldonProtocolWorker.__module__}.{SeldonProtocolWorker.__qualname__}"
# gunicorn kills a worker silent this long; the worker reports from its event loop every
# second, between requests: this bounds one request's scoring, not a slow client.
WORKER_TIMEOUT_S = 30
GRACEFUL_TIMEOUT_S = 5  # the platform sends SIGKILL 5 s after SIGTERM


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line, with defaults from the environment."""
    env = config.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("interface_name", help="model class: `Module` (module and class alike) or `module.Class`")
    parser.add_argument("--host", default=env("SERVING_HOST"),
                        help="address to listen on (0.0.0.0: every interface, e.g. inside a container)")
    parser.add_argument("--http-port", type=int, default=int(env("PREDICTIVE_UNIT_HTTP_SERVICE_PORT")))
    parser.add_argument("--metrics-port", type=int, default=int(env("PREDICTIVE_UNIT_METRICS_SERVICE_PORT")),
                        help="Seldon's Prometheus endpoint; 0 turns it off")
    parser.add_argument("--workers", type=int, default=int(env("GUNICORN_WORKERS")))
    parser.add_argument("--threads", type=int, default=int(env("GUNICORN_THREADS")),
                        help="requests one worker scores at once (more than 1 for models that wait on I/O)")
    parser.add_argument("--keepalive", type=int, default=int(env("GUNICORN_KEEPALIVE")),
                        help="seconds an idle connection (new or kept alive) stays open")
    parser.add_argument("--read-timeout", type=float, default=float(env("SERVING_READ_TIMEOUT_S")),
                        help="seconds a client has to send one whole request")
    parser.add_argument("--max-body-mb", type=float, default=float(env("SERVING_MAX_BODY_MB")))
    parser.add_argument("--parameters", default=env("PREDICTIVE_UNIT_PARAMETERS"),
                        help="Seldon model parameters (JSON list of {name, value, type})")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    for name in ("workers", "threads", "keepalive", "read_timeout", "max_body_mb"):
        if getattr(args, name) <= 0:
            # keepalive 0 would close every new connection before its first byte (see seldon_worker)
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def bind_address(host: str, port: int) -> str:
    """gunicorn's bind string; IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def load_user_object(interface_name: str, parameters: str):
    """Imports the model class as Seldon does and builds it with Seldon's typed parameters."""
    from seldon_core.microservice import parse_parameters

    module_name, _, class_name = interface_name.rpartition(".")
    module = importlib.import_module(module_name or interface_name)
    return getattr(module, class_name)(**parse_parameters(json.loads(parameters)))


def add_error_handlers(app, max_body_bytes: int) -> None:
    """Answers HTTP-level mistakes with their own status in Seldon's error format.

    Seldon's app turns every exception it does not know into 500, even a 404 or
    415 from Flask, and a body that timed out while being read.
    """
    from flask import jsonify, request
    from seldon_core.flask_utils import SeldonMicroserviceException
    from werkzeug.exceptions import HTTPException, LengthRequired, RequestEntityTooLarge

    def answer(message: str, status: int):
        response = jsonify(SeldonMicroserviceException(message, status_code=status).to_dict())
        response.status_code = status
        return response

    @app.before_request
    def limit_body():
        if request.content_length is not None and request.content_length > max_body_bytes:
            raise RequestEntityTooLarge(f"request body of {request.content_length} bytes; the limit is {max_body_bytes}")
        if request.content_length is None and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            # A chunked body has no size to check before it is read whole into memory.
            raise LengthRequired("send the body with a Content-Length (chunked bodies are not accepted)")

    @app.errorhandler(HTTPException)
    def http_error(error):
        return answer(f"{error.code} {error.name}: {error.description}", error.code or 500)

    @app.errorhandler(TimeoutError)
    def timed_out(error):
        return answer(f"the request body did not arrive in time ({error})", 408)


def rest_options(args: argparse.Namespace, port: int, workers: int, threads: int) -> dict:
    """gunicorn settings shared by the REST and the metrics server."""
    from seldon_core.gunicorn_utils import post_worker_init

    return {
        "bind": bind_address(args.host, port),
        "worker_class": WORKER_CLASS,
        "workers": workers,
        "threads": threads,
        "keepalive": args.keepalive,
        "timeout": WORKER_TIMEOUT_S,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "loglevel": args.log_level.lower(),
        "accesslog": None,
        "post_worker_init": post_worker_init,
        "worker_exit": end_worker,
    }


def end_worker(server, worker, *, seldon_metrics=None) -> None:
    """gunicorn's ``worker_exit`` hook: clears the worker's Seldon metrics; a stopped worker ends at once.

    The interpreter teardown of a worker forked from a process that loaded torch
    and Seldon costs over a second of CPU; with several workers a stop took longer
    than the platform's 5 s grace. gunicorn has closed the sockets and finished the
    requests before this hook, so there is nothing left to tear down. A worker that
    failed to boot (still ``alive``) exits the normal way, with gunicorn's code.
    """
    if seldon_metrics is not None:
        from seldon_core.gunicorn_utils import worker_exit

        try:
            worker_exit(server, worker, seldon_metrics=seldon_metrics)
        except (OSError, EOFError):
            pass  # the whole group is stopping and Seldon's metrics manager went first
    if not worker.alive:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def serve_metrics(seldon_metrics, args: argparse.Namespace) -> None:
    """Runs Seldon's Prometheus endpoint (``PREDICTIVE_UNIT_METRICS_ENDPOINT``) on ``--metrics-port``."""
    from seldon_core.gunicorn_utils import StandaloneApplication
    from seldon_core.wrapper import get_metrics_microservice

    app = get_metrics_microservice(seldon_metrics)
    config.remove(STABLE_CONTROL)  # its workers answer metrics only: never the stable port
    StandaloneApplication(app, options=rest_options(args, args.metrics_port, 1, 2)).run()


def _worker_metrics_class():
    """Seldon's metrics, minus the six calls to its metrics manager process per request that has no custom metric.

    ``SeldonMetrics.update`` reads and writes the worker's entry of a ``multiprocessing``
    manager dict under a manager lock even when the model reported no metric: about a
    third of a request's time, and one process every worker queues on.
    """
    from seldon_core.metrics import SeldonMetrics

    class WorkerMetrics(SeldonMetrics):
        def update(self, custom_metrics, method):
            if custom_metrics:
                super().update(custom_metrics, method)

    return WorkerMetrics


def main(argv: list[str] | None = None) -> None:
    """Builds the model, starts the metrics server beside it, then runs the REST server (blocks)."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from seldon_core.gunicorn_utils import UserModelApplication
    from seldon_core.wrapper import get_rest_microservice

    WorkerMetrics = _worker_metrics_class()
    user_object = load_user_object(args.interface_name, args.parameters)
    seldon_metrics = WorkerMetrics(worker_id_func=os.getpid)
    app = get_rest_microservice(user_object, seldon_metrics)
    max_body = int(args.max_body_mb * 1024 * 1024)
    add_error_handlers(app, max_body)
    # The workers are forked from this process: they find the model and the limits on their class.
    SeldonProtocolWorker.user_model, SeldonProtocolWorker.seldon_metrics = user_object, seldon_metrics
    SeldonProtocolWorker.read_timeout_s, SeldonProtocolWorker.max_body_bytes = args.read_timeout, max_body
    if args.metrics_port:
        # As Seldon does: a forked child, so that it shares the metrics manager.
        multiprocessing.Process(target=serve_metrics, args=(seldon_metrics, args), daemon=True).start()
    options = rest_options(args, args.http_port, args.workers, args.threads)
    options["worker_exit"] = partial(end_worker, seldon_metrics=seldon_metrics)
    logger.info("serving %s on %s (metrics port %s)", args.interface_name, options["bind"], args.metrics_port or "off")
    UserModelApplication(app, user_object, 0, None, args.interface_name, options=options).run()


if __name__ == "__main__":
    main()
