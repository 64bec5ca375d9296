"""A veil node: runs Flower ClientApp tasks in one long-lived process, and the SuperNode.

Why (measured on Flower 1.42, 3 nodes on localhost): a stock SuperNode starts a fresh
``flwr-clientapp`` process for every message (about 0.5 s to import Flower, 1 s more for
torch, plus the FAB install), its SuperExec polls for tasks once a second, and the SuperNode
itself sleeps 3 s whenever it finds no message and polls replies every 0.5 s; the ServerApp
grid's ``send_and_receive`` polls every 3 s too. Together: 10-13 s per DSSGD exchange.

veil keeps the protocol and removes the waits:

- the SuperNode runs with ``--isolation process``, and this module's :func:`serve` takes
  its tasks over the SuperNode's own Runtime API (``AcquireTask``, then the task's message),
  running veil's ClientApp in this process: torch, the data shard and the participant's
  model stay loaded; the participant's state persists between exchanges, as DSSGD needs;
- :func:`supernode` starts the stock SuperNode with its fixed sleeps capped at
  ``POLL_SECONDS`` (a wrapper around its module's ``time``, nothing else changed);
- the ServerApp polls with ``push_messages``/``pull_messages`` every ``POLL_SECONDS``;
- :func:`short_waits`: a message's payload objects are pulled with a 1 s first back-off when
  they are not there yet (they seldom are: the pull races the push), doubling to 10 s;
  veil's processes start that back-off at ``POLL_SECONDS``, capped at 0.2 s.

This uses Flower's runtime client classes, which are internal: the Flower version is pinned
in ``pyproject.toml`` (``flwr==1.42.*``) and a test runs a real round on every CI run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

# Seconds between polls. Measured on 2 cores, 3 nodes (round overhead): 0.01 s 0.90, 0.03 s
# 0.78, 0.06 s 0.74, 0.1 s 0.97, 0.2 s 1.36; shorter polls cost more than they save when the
# nodes share the CPU. VEIL_FLOWER_POLL overrides it.
POLL_SECONDS = float(os.environ.get("VEIL_FLOWER_POLL", "0.05"))
log = logging.getLogger("veil.collab.flower")


def short_waits() -> None:
    """Start Flower's object-pull back-off at ``POLL_SECONDS`` (capped at 0.2 s) in this
    process; the total time limit (``max_time``, 2 h) is unchanged."""
    from flwr.supercore.inflatable import inflatable_utils as pulls

    for fn in (pulls.pull_objects, pulls.pull_and_inflate_object_from_tree):
        fn.__kwdefaults__ |= {
            "initial_backoff": POLL_SECONDS,
            "backoff_cap": 0.2,
            "max_tries_per_object": None,
        }


def _runtime_client(address: str, component: str, token: str | None = None):
    from flwr.supercore.interceptors import (
        RuntimeTokenHttpInterceptor,
        RuntimeVersionHttpInterceptor,
    )
    from flwr.supercore.retry import make_simple_http_retry_invoker
    from flwr.supercore.runtime import RuntimeHttpClient

    interceptors = [RuntimeVersionHttpInterceptor(component_name=component)]
    if token is not None:
        interceptors.append(RuntimeTokenHttpInterceptor(token))
    return RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,
        root_certificates=None,
        interceptors=interceptors,
        retry_invoker=make_simple_http_retry_invoker(),
    )


def serve(address: str, once: bool = False) -> None:
    """Take ClientApp tasks from the SuperNode at ``address`` and run them here, forever."""
    from flwr.proto.runtime_pb2 import AcquireTaskRequest  # noqa: I001
    from flwr.supercore.constant import TaskType

    from veil.collab.flower import client_app  # torch and veil load once, here

    short_waits()
    acquire = _runtime_client(address, "SuperExec")
    request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
    while True:
        res = acquire.AcquireTask(request)
        if res.HasField("task") and res.token:
            run_task(address, res.token, client_app.app)
            if once:
                return
        else:
            time.sleep(POLL_SECONDS)


def run_task(address: str, token: str, app) -> None:
    """One ClientApp task: pull its message, run ``app`` on it, push the reply and status."""
    from flwr.app import Error, Message
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
    from flwr.supernode.runtime.run_clientapp import (
        pull_task_input,
        push_message,
        push_task_output,
    )

    client = _runtime_client(address, "flwr-clientapp", token)
    heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
    heartbeat.start()
    context, status, details = None, SubStatus.FAILED, "ClientApp failed"
    try:
        message, context, _run, _fab = pull_task_input(client)
        try:
            reply = app(message=message, context=context)
            status, details = SubStatus.COMPLETED, ""
        except Exception as e:  # the reply carries the error to the ServerApp
            log.exception("ClientApp raised")
            details = f"{type(e).__name__}: {e}"
            reply = Message(Error(ErrorCode.CLIENT_APP_RAISED_EXCEPTION, details), reply_to=message)
        push_message(client, reply, context)
    finally:
        push_task_output(client, context, status, details)
        heartbeat.stop()
        client.close()


def cap_sleeps(module) -> None:
    """Make ``module``'s ``time.sleep`` sleep at most ``POLL_SECONDS`` (that module only)."""
    import types

    real_sleep = time.sleep
    names = {k: getattr(time, k) for k in dir(time) if not k.startswith("__")}
    shim = types.SimpleNamespace(**names)
    shim.sleep = lambda seconds: real_sleep(min(seconds, POLL_SECONDS))
    module.time = shim


def supernode(argv: list[str]) -> None:
    """Run Flower's SuperNode with its fixed sleeps capped at ``POLL_SECONDS``."""
    from flwr.supernode import start_client_internal
    from flwr.supernode.cli.flower_supernode import flower_supernode

    cap_sleeps(start_client_internal)
    short_waits()
    sys.argv = ["flower-supernode", *argv]
    flower_supernode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m veil.collab.flower.node")
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve", help="run ClientApp tasks of a process-isolated SuperNode")
    s.add_argument("--runtime-api-address", required=True)
    sub.add_parser("supernode", help="Flower's SuperNode with short polls (args follow)")
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.what == "serve":
        serve(args.runtime_api_address)
    else:
        supernode(rest)


if __name__ == "__main__":
    main()
