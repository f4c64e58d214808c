"""`nerv-rt serve`: start Ray (in-process, or join a cluster with an address), run the application, serve until
Ctrl-C, then shut down what it started."""
from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from ..runtime.pipeline import Pipeline
from .app import ServeOptions, deployment

APP_NAME = "nerv-rt"


def serve_until_interrupted(options: ServeOptions, host: str, port: int, address: str | None,
                            say: Callable[[str], None] = print) -> None:
    import ray
    from ray import serve

    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's INFO chatter; its errors still show
    options.check()
    Pipeline.load(options.model, backend=options.backend, device=options.device, precision=options.precision)  # fail here, in one line
    ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             configure_logging=False)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(deployment(options), name=APP_NAME, route_prefix="/")
        replicas = (f"{options.min_replicas}-{options.max_replicas} replicas (autoscaling)" if options.min_replicas is not None
                    else f"{options.replicas} replica{'s' * (options.replicas > 1)}")
        say(f"serving {options.model} on http://{host}:{port} ({replicas}, batches of up to {options.max_batch} within "
            f"{options.batch_wait_ms:g} ms); Ctrl-C stops")
        stop.wait()
    finally:
        serve.delete(APP_NAME) if address else serve.shutdown()
        ray.shutdown()
