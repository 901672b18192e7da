"""`stagecraft render`: the DatabaseMigration resources for the databases of a stagecraft.yml.

The config file gives the engine, folder, strategy, options and `connection_env`; the command line
gives what the file cannot know: the Secret holding each URL and where the files come from in the
cluster. Each resource is checked as the admission webhook would check it before it is printed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click

from .common import reports_errors
from .target import UsageProblem

# A DatabaseMigration's name: a DNS-1123 subdomain, as the API server requires.
_RESOURCE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SECRET = re.compile(r"^(?:(?P<database>[^=:]+)=)?(?P<name>[^=:]+):(?P<key>[^=:]+)$")


def _secrets(pairs: tuple[str, ...]) -> dict[str | None, tuple[str, str]]:
    """`--secret NAME:KEY` for every database, `--secret DATABASE=NAME:KEY` for one."""
    secrets: dict[str | None, tuple[str, str]] = {}
    for pair in pairs:
        match = _SECRET.match(pair)
        if not match:
            raise UsageProblem(
                f"--secret {pair!r} is not NAME:KEY or DATABASE=NAME:KEY (the Secret and its key "
                "holding the database URL)"
            )
        secrets[match["database"]] = (match["name"], match["key"])
    return secrets


def _one_source(deployment: str | None, image: str | None, config_map: str | None) -> None:
    flags = {"--deployment": deployment, "--image": image, "--config-map": config_map}
    given = [flag for flag, value in flags.items() if value]
    if len(given) != 1:
        raise UsageProblem(
            "say where the migration files come from in the cluster with exactly one of "
            f"--deployment (its image), --image or --config-map; got {len(given)}"
            + (f": {', '.join(given)}" if given else "")
        )


def _validation_message(error: Any) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in issue['loc']) or 'spec'}: {issue['msg']}"
        for issue in error.errors()
    )


def _model(flag: str, model: Any, **fields: Any) -> Any:
    """A reference built from a flag's value; a bad value is an error naming the flag."""
    from pydantic import ValidationError

    try:
        return model(**fields)
    except ValidationError as error:
        raise UsageProblem(f"{flag}: {_validation_message(error)}") from None


def _manifest(
    config_file: Path, name: str, database: Any, secret: tuple[str, str], kwargs: dict[str, Any]
) -> dict[str, Any]:
    from pydantic import ValidationError

    from ..operator.models import ConfigMapSource, DeploymentReference, SecretKeyRef
    from ..operator.render import database_migration_manifest
    from ..operator.validation import validate_spec

    if not _RESOURCE_NAME.match(name):
        raise UsageProblem(
            f"{config_file}: databases.{name}: {name!r} cannot name a DatabaseMigration "
            "(lowercase letters, digits, - and .); rename the entry"
        )
    deployment = None
    if kwargs["deployment"]:
        containers = list(kwargs["containers"])
        deployment = _model(
            "--deployment", DeploymentReference, name=kwargs["deployment"], containers=containers
        )
    if kwargs["config_map"]:
        _model("--config-map", ConfigMapSource, name=kwargs["config_map"])
    try:
        manifest = database_migration_manifest(
            name,
            kwargs["namespace"],
            database,
            secret=_model("--secret", SecretKeyRef, name=secret[0], key=secret[1]),
            deployment=deployment,
            image=kwargs["image"],
            config_map=kwargs["config_map"],
        )
    except ValidationError as error:
        raise UsageProblem(
            f"databases.{name} in {config_file}: {_validation_message(error)}"
        ) from None
    validation = validate_spec(manifest["spec"])
    if not validation.valid:
        raise UsageProblem(f"databases.{name} in {config_file}: {validation.message}")
    return manifest


@click.command()
@click.option(
    "--config",
    "-c",
    "config_file",
    default="stagecraft.yml",
    show_default=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The stagecraft.yml whose databases to render.",
)
@click.option(
    "--database",
    "-d",
    "databases",
    multiple=True,
    metavar="NAME",
    help="Render only these entries of `databases:` (repeatable; default: all).",
)
@click.option(
    "--namespace",
    "-n",
    metavar="NAMESPACE",
    help="metadata.namespace of the resources (default: none, so `kubectl apply -n` decides).",
)
@click.option(
    "--secret",
    "secret_pairs",
    multiple=True,
    required=True,
    metavar="NAME:KEY",
    help="The Secret and key holding the database URL; DATABASE=NAME:KEY for one database.",
)
@click.option("--deployment", metavar="NAME", help="The Deployment whose image holds the files.")
@click.option(
    "--container",
    "containers",
    multiple=True,
    metavar="NAME",
    help="With --deployment: the containers whose images hold them (default: the first).",
)
@click.option("--image", metavar="IMAGE", help="An image that holds the migrations folder.")
@click.option("--config-map", metavar="NAME", help="A ConfigMap whose keys are the files.")
@reports_errors
def render(**kwargs: Any) -> None:
    """Print DatabaseMigration manifests (YAML) for the databases of a config file."""
    import yaml

    from ..config import load_config

    _one_source(kwargs["deployment"], kwargs["image"], kwargs["config_map"])
    if kwargs["containers"] and not kwargs["deployment"]:
        raise UsageProblem("--container goes with --deployment")
    secrets = _secrets(kwargs["secret_pairs"])
    config_file: Path = kwargs["config_file"]
    loaded = load_config(config_file)
    names = list(kwargs["databases"]) or list(loaded.config.databases)
    unknown = set(secrets) - {None, *loaded.config.databases}
    if unknown:
        raise UsageProblem(
            f"--secret names {', '.join(sorted(str(name) for name in unknown))}, which "
            f"{config_file} does not configure; configured: {', '.join(loaded.config.databases)}"
        )
    manifests = []
    for requested in names:
        name, database = loaded.database(requested)
        secret = secrets.get(name) or secrets.get(None)
        if secret is None:
            raise UsageProblem(
                f"no Secret for databases.{name}: add --secret NAME:KEY (all databases) or "
                f"--secret {name}=NAME:KEY"
            )
        manifests.append(_manifest(config_file, name, database, secret, kwargs))
    click.echo(yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True), nl=False)
