"""`stagecraft operator`: run the operator, configured like `python -m stagecraft.operator`.

Every setting is an environment variable (the Helm chart sets them, see
`stagecraft.operator.main`); each flag overrides one, so the process in a pod and on a laptop
read their settings through the same code and fail with the same messages.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .exit_codes import ExitCode

# flag (click's parameter name) -> the environment variable it overrides
FLAG_VARIABLES = {
    "runner_image": "STAGECRAFT_RUNNER_IMAGE",
    "namespaces": "STAGECRAFT_NAMESPACES",
    "namespace_selector": "STAGECRAFT_NAMESPACE_SELECTOR",
    "peering": "STAGECRAFT_PEERING",
    "liveness": "STAGECRAFT_LIVENESS",
    "metrics_port": "STAGECRAFT_METRICS_PORT",
    "webhook_port": "STAGECRAFT_WEBHOOK_PORT",
    "webhook_cert": "STAGECRAFT_WEBHOOK_CERT",
    "webhook_key": "STAGECRAFT_WEBHOOK_KEY",
    "lock_timeout": "STAGECRAFT_LOCK_TIMEOUT",
}


def environment_with_flags(environment: dict[str, str], flags: dict[str, Any]) -> dict[str, str]:
    """The process environment with each given flag written over its variable."""
    merged = dict(environment)
    for flag, variable in FLAG_VARIABLES.items():
        value = flags.get(flag)
        if value is None or value == ():
            continue
        merged[variable] = ",".join(value) if isinstance(value, tuple) else str(value)
    return merged


def _check_selector(_: click.Context, __: click.Parameter, value: str | None) -> str | None:
    if value:
        from ..operator.scoping import SelectorError, parse_selector

        try:
            parse_selector(value)
        except SelectorError as error:
            raise click.BadParameter(str(error)) from None
    return value


@click.command()
@click.option(
    "--runner-image",
    metavar="IMAGE",
    help="The Stagecraft image the migration Jobs run [STAGECRAFT_RUNNER_IMAGE; required].",
)
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    metavar="NAME|GLOB",
    help="Serve only this namespace (repeatable; globs like team-*) "
    "[STAGECRAFT_NAMESPACES; default: all].",
)
@click.option(
    "--namespace-selector",
    metavar="SELECTOR",
    callback=_check_selector,
    help="Serve only namespaces whose labels match, e.g. 'stagecraft.dev/enabled=true' "
    "[STAGECRAFT_NAMESPACE_SELECTOR].",
)
@click.option(
    "--peering",
    metavar="NAME",
    help="Peering name for several replicas, one active [STAGECRAFT_PEERING; default: standalone].",
)
@click.option(
    "--liveness",
    metavar="URL",
    help="Liveness endpoint; '' for none [STAGECRAFT_LIVENESS; default "
    "http://0.0.0.0:8080/healthz].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Port of /metrics; 0 for none [STAGECRAFT_METRICS_PORT; default 8081].",
)
@click.option(
    "--webhook-port",
    type=click.IntRange(1, 65535),
    help="Port of the admission webhook server [STAGECRAFT_WEBHOOK_PORT; default 9443].",
)
@click.option(
    "--webhook-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="Its TLS certificate; without one no webhook server runs [STAGECRAFT_WEBHOOK_CERT].",
)
@click.option(
    "--webhook-key",
    type=click.Path(exists=True, dir_okay=False),
    help="Its TLS private key [STAGECRAFT_WEBHOOK_KEY].",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    help="Seconds a Job waits for another runner's lock [STAGECRAFT_LOCK_TIMEOUT; default 60].",
)
@click.option("--verbose", "-v", is_flag=True, help="Log kopf's handling of each event.")
def operator(verbose: bool, **flags: Any) -> None:
    """Run the operator: reconcile DatabaseMigration resources until SIGTERM or Ctrl-C.

    It talks to the cluster as kubectl does: the pod's service account in a cluster, else
    KUBECONFIG or ~/.kube/config. Each flag overrides the environment variable in brackets.
    """
    from ..operator.logs import configure_logging
    from ..operator.main import OperatorConfigError, options_from_environment, run_operator

    try:
        options = options_from_environment(environment_with_flags(dict(os.environ), flags))
    except OperatorConfigError as error:
        click.echo(
            f"error: {error} (flags override the variables: stagecraft operator -h)", err=True
        )
        sys.exit(int(ExitCode.INVALID_INPUT))
    configure_logging(verbose=verbose)
    run_operator(options)
