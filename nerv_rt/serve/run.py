"""`nerv-rt serve`: start a local Ray instance (or join a cluster with an address), run the application, serve
until Ctrl-C or SIGTERM, then take down what this command started, and only that."""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import asdict
from unittest import mock

from ..engines.select import resolve_backend
from ..errors import ON_COMMAND_LINE, NervError, interrupt
from ..runtime.sources import resolve
from .app import APP_NAME, ServeOptions, deployment, open_pipeline

PROXY_READY_TIMEOUT_S = 60  # serve.start itself waits 60 s for the proxy


def serve_until_interrupted(options: ServeOptions, host: str | None, port: int, address: str | None,
                            say: Callable[[str], None] = print) -> None:
    import ray
    from ray import serve

    options.check()
    joined = address is not None
    if not joined:  # the replicas load the model; here only what can be checked without loading it
        for source in resolve(options.model):
            resolve_backend(options.backend, source, options.replica_device())
    host = host or ("0.0.0.0" if joined else "127.0.0.1")  # a cluster's proxies must be reachable from outside
    if not joined:
        _check_port_free(host, port)
        if options.min_replicas == 0:  # no replica loads at the start to show that one can: load it once first
            _check_loads(options)
    # Serve restarts a proxy that is not ready within 5 s, three times over; on a busy small machine a proxy's start
    # takes longer than that and serve.start fails. The Ray processes started here inherit the environment of
    # ray.init (a user's own setting wins); this process's environment is left as it was.
    ready = "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S"
    env = {} if joined else {ready: os.environ.get(ready, str(PROXY_READY_TIMEOUT_S))}
    previous = signal.signal(signal.SIGTERM, interrupt)  # as Ctrl-C, from the start: ray.init takes seconds
    try:
        with mock.patch.dict(os.environ, env):
            # "local": a new Ray instance here, never a cluster that RAY_ADDRESS or a running `ray start` would join
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
        signal.signal(signal.SIGTERM, interrupt)  # again: ray.init installs its own handler
        for name in ("ray", "ray.serve"):  # Ray's INFO chatter; its warnings and errors still show
            logging.getLogger(name).setLevel(logging.WARNING)
        if not joined:  # replicas Ray cannot place would wait for resources forever, without a word
            _check_resources(options, ray.cluster_resources())
        serve_was_running = joined and _serve_running()
        if serve_was_running and APP_NAME in serve.status().applications:
            raise NervError(f"the cluster at {address} already runs an application named {APP_NAME!r}; "
                            f"`serve delete {APP_NAME}` it first")
        try:
            serve.start(http_options={"host": host, "port": port})
            try:
                serve.run(deployment(options, ON_COMMAND_LINE.get()), name=APP_NAME, route_prefix="/")
            except RuntimeError as e:  # "Deploying application failed": the reason is in the deployment's status
                raise NervError(f"the generator replicas failed to start: {_failure(serve, e)}") from None
            replicas = (f"{options.min_replicas}-{options.max_replicas} replicas (autoscaling)"
                        if options.min_replicas is not None else f"{options.replicas} replica{'s' * (options.replicas > 1)}")
            say(f"serving {options.model} on http://{host}:{port} ({replicas}, batches of up to {options.max_batch} "
                f"within {options.batch_wait_ms:g} ms); Ctrl-C stops. Replica logs: /tmp/ray/session_latest/logs/serve")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                say("stopping: the requests in flight finish first (Ctrl-C again stops at once)")
                raise
        finally:
            _take_down(serve, joined, serve_was_running)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM, while serving or still starting: take down what was started
        pass
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, previous)


def _check_loads(options: ServeOptions) -> None:
    """Load the model as a replica would, once, in a child process: a CUDA context or engines would otherwise stay
    with this long-lived one."""
    with mp.get_context("spawn").Pool(1) as pool:
        problem = pool.apply(_load_problem, (asdict(options), ON_COMMAND_LINE.get()))
    if problem is not None:
        raise NervError(problem)


def _load_problem(options: dict, on_command_line: bool) -> str | None:
    """Why a replica with these options could not load (its one-line error), or None."""
    try:
        open_pipeline(ServeOptions(**options), on_command_line)
    except NervError as e:
        return str(e)
    return None


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP proxy binds: a port in TIME_WAIT is free
        try:
            s.bind((host, port))
        except OSError as e:
            raise NervError(f"cannot listen on {host}:{port} ({e.strerror}); stop what uses it or pass another --port") from None


def _check_resources(options: ServeOptions, have: dict[str, float]) -> None:
    """The replicas that must start (--replicas, or --min-replicas of at least one) fit this Ray instance."""
    n = options.replicas if options.min_replicas is None else max(options.min_replicas, 1)
    for flag, per, key in (("--num-cpus", options.num_cpus, "CPU"), ("--num-gpus", options.num_gpus, "GPU")):
        if n * per > have.get(key, 0) + 1e-9:
            raise NervError(f"{n} replica{'s' * (n > 1)} at {flag} {per:g} need {n * per:g} {key}s and this machine has "
                            f"{have.get(key, 0):g}: ask for fewer replicas or a smaller {flag}")


def _failure(serve, error: RuntimeError) -> str:
    """The last exception line of the Generator deployment's status message (a replica's traceback), else `error`."""
    app = serve.status().applications.get(APP_NAME)
    message = app.deployments["Generator"].message if app and "Generator" in app.deployments else ""
    raised = [line.strip() for line in message.splitlines() if re.match(r"\s*[\w.]+(Error|Exception): ", line)]
    return re.sub(r"^[\w.]+\.(?=\w+: )", "", raised[-1]) if raised else str(error)


def _serve_running() -> bool:
    """Whether the cluster already has a Serve controller (serve.status() answers even when it has none)."""
    from ray.serve.context import _get_global_client

    return _get_global_client(raise_if_no_controller_running=False) is not None


def _take_down(serve, joined: bool, serve_was_running: bool) -> None:
    """Delete our application first: its replicas finish the requests they hold, the proxy passing the answers on
    (shutting Serve down at once cut them off). Then shut Serve down too where this command started it."""
    steps = [lambda: serve.delete(APP_NAME)] + ([] if joined and serve_was_running else [serve.shutdown])
    for step in steps:
        try:
            step()
        except Exception as e:  # a failed start leaves nothing to delete: keep the error that got us here
            logging.getLogger(__name__).debug("serve cleanup: %s", e)
