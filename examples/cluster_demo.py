"""`make demo`: the pre_deploy gate on a laptop, with no cluster.

It starts what the operator tests use (tests/operator): an emulated Kubernetes API server, the
real kopf operator with its admission webhooks, and stand-in Job and Deployment controllers
(the Job's containers run as local processes: the real `stagecraft migrate run`, on an embedded
SQLite database). Then it installs the example shop (examples/shop), ships a new image whose
migration adds a column, and a third image whose migration fails, and narrates what the gate
does, read from the emulated cluster and the database as it happens.

Run from the repository root: `.venv/bin/python examples/cluster_demo.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the emulated cluster lives with the operator's tests

from tests.operator.harness import (  # noqa: E402
    NAMESPACE,
    Cluster,
    condition_of,
    running_cluster,
)

from stagecraft.operator.gate import PENDING_HASH_ANNOTATION  # noqa: E402

SHOP = ROOT / "examples" / "shop"
APP = "shop-api"
RESOURCE = "shop"
IMAGES = {
    "1.4.0": {},
    "1.5.0": {
        "20260104090000_add_loyalty_points.sql": (
            "ALTER TABLE customers ADD COLUMN loyalty_points integer NOT NULL DEFAULT 0;\n"
        )
    },
    "1.6.0": {
        "20260105090000_rename_email.sql": (
            "-- a typo: the column is called email\n"
            "ALTER TABLE customers RENAME COLUMN emial TO contact;\n"
        )
    },
}
WAIT_SECONDS = 60.0  # a bound for a hang, not an expectation
HOLD_SECONDS = 1.0  # how long the demo holds each Job back, so the paused rollout can be seen
STARTED = time.monotonic()


class DemoFailed(Exception):
    """The cluster did not do what the story says: the demo stops and says where."""


def _style(code: str) -> Callable[[str], str]:
    if not sys.stdout.isatty():
        return lambda text: text
    return lambda text: f"\033[{code}m{text}\033[0m"


BOLD, DIM, GREEN, RED, YELLOW = (_style(code) for code in ("1", "2", "32", "31", "33"))


def emit(text: str, stream: Any = None) -> None:
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()


def say(text: str) -> None:
    emit(f"{DIM(f'{time.monotonic() - STARTED:5.1f}s')}  {text}")


def heading(text: str) -> None:
    emit(f"\n{BOLD(text)}")


def image(version: str) -> str:
    return f"registry.example/{APP}:{version}"


def make_images(root: Path) -> dict[str, Path]:
    """One folder per application version, holding /app/migrations as that image would."""
    folders: dict[str, Path] = {}
    files: dict[str, str] = {p.name: p.read_text() for p in (SHOP / "migrations").glob("*.sql")}
    for version, added in IMAGES.items():
        files = {**files, **added}
        migrations = root / "images" / version / "app" / "migrations"
        migrations.mkdir(parents=True)
        for name, text in files.items():
            (migrations / name).write_text(text, encoding="utf-8")
        folders[image(version)] = root / "images" / version
    return folders


def manifest(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SHOP / "k8s" / name).read_text())
    return loaded


async def wait_for(what: str, check: Callable[[], bool], cluster: Cluster) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if cluster.operator.errors:
            raise DemoFailed(f"the operator stopped: {cluster.operator.errors[0]!r}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"waited {WAIT_SECONDS:.0f} s and this never happened: {what}")
        await asyncio.sleep(0.02)


def deployment(cluster: Cluster) -> dict[str, Any]:
    stored = cluster.emulator.stored("apps", "deployments", NAMESPACE, APP)
    if stored is None:
        raise DemoFailed(f"Deployment {APP} is gone")
    return stored


def serving(cluster: Cluster) -> set[str]:
    """The versions of the application's pods that are up and not terminating."""
    return {
        pod["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
        for pod in cluster.deployments.pods(APP)
        if not pod["metadata"].get("deletionTimestamp")
    }


def replica_set_versions(cluster: Cluster) -> list[str]:
    return sorted(
        rs["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
        for rs in cluster.deployments.replica_sets(APP)
    )


def customer_columns(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[1] for row in connection.execute("PRAGMA table_info(customers)")]


def job_states(cluster: Cluster) -> list[tuple[str, str]]:
    states = []
    for job in cluster.jobs_of(RESOURCE):
        conditions = {c["type"] for c in job.get("status", {}).get("conditions", [])}
        finished = [kind for kind in ("Complete", "Failed") if kind in conditions]
        states.append((job["metadata"]["name"], finished[0] if finished else "running"))
    return states


def condition(cluster: Cluster, kind: str) -> dict[str, Any]:
    status = cluster.database_migration(RESOURCE).get("status") or {}
    return condition_of(status, kind)


async def write_deployment(cluster: Cluster, version: str, *, create: bool) -> dict[str, Any]:
    """`kubectl apply` over HTTP: the answer is the object as stored, after the webhook."""
    apps = cluster.api._apps
    if create:
        body = manifest("deployment.yaml")
        body["metadata"]["namespace"] = NAMESPACE
        body["spec"]["template"]["spec"]["containers"][0]["image"] = image(version)
        call: Any = apps.create_namespaced_deployment
        response: Any = await asyncio.to_thread(call, NAMESPACE, body, _preload_content=False)
    else:
        containers = [{"name": "api", "image": image(version)}]
        patch = {"spec": {"template": {"spec": {"containers": containers}}}}
        call = apps.patch_namespaced_deployment
        response = await asyncio.to_thread(call, APP, NAMESPACE, patch, _preload_content=False)
    stored: dict[str, Any] = json.loads(response.data)
    return stored


async def ship(cluster: Cluster, version: str, database: Path, *, create: bool = False) -> bool:
    """Write the Deployment with `version` and follow the gate; True if it was released."""
    cluster.jobs.released.clear()  # hold the Job a moment, so that the wait can be seen
    before = {name for name, _ in job_states(cluster)}
    stored = await write_deployment(cluster, version, create=create)
    pending = (stored["metadata"].get("annotations") or {}).get(PENDING_HASH_ANNOTATION)
    if not stored["spec"].get("paused") or not pending:
        raise DemoFailed(f"the webhook did not pause {APP} {version}")
    say(f"{YELLOW('paused')} by the webhook in the same write (pending gate hash {pending[:8]})")
    await wait_for("the migration Job", lambda: len(job_states(cluster)) > len(before), cluster)
    (job,) = {name for name, _ in job_states(cluster)} - before
    say(f"migration Job {job} created, with the {version} image's migrations")
    await asyncio.sleep(HOLD_SECONDS)
    running = ", ".join(sorted(serving(cluster))) or "nothing yet"
    say(
        f"while it runs: ReplicaSets {replica_set_versions(cluster) or 'none'}, "
        f"serving {running}: no pod of {version} has started"
    )
    cluster.jobs.released.set()
    await wait_for(
        "the Job to finish", lambda: dict(job_states(cluster))[job] != "running", cluster
    )
    if dict(job_states(cluster))[job] == "Failed":
        stalled_now = lambda: condition(cluster, "Stalled").get("status") == "True"  # noqa: E731
        await wait_for("the resource to stall", stalled_now, cluster)
        stalled = condition(cluster, "Stalled")
        say(f"{RED('the migration failed')}: Stalled/{stalled['reason']}")
        for line in stalled["message"].splitlines():
            emit(f"         {line}")
        return False
    say(
        f"{GREEN('the migration succeeded')}: customers has {', '.join(customer_columns(database))}"
    )
    await wait_for("the release", lambda: not deployment(cluster)["spec"].get("paused"), cluster)
    say(f"{GREEN('released')}: the operator unpaused {APP} (guarded by the pending hash)")
    await wait_for(f"{version} serving", lambda: serving(cluster) == {version}, cluster)
    say(f"rolled out: every pod now runs {version}")
    return True


async def story(workdir: Path) -> None:
    database = workdir / "shop.db"
    heading("Starting an emulated cluster, the Stagecraft operator and its webhooks")
    async with running_cluster(workdir / "cluster") as cluster:
        cluster.jobs.images.update(make_images(workdir))
        secret = manifest("secret.yaml")
        await cluster.create_secret(secret["metadata"]["name"], {"url": f"sqlite:///{database}"})
        resource = manifest("databasemigration.yaml")
        await cluster.apply_database_migration(RESOURCE, resource["spec"])
        say(f"DatabaseMigration {RESOURCE} (raw engine, pre_deploy) and its Secret applied")
        await wait_for(
            "the resource to wait for its Deployment",
            lambda: bool(cluster.database_migration(RESOURCE).get("status")),
            cluster,
        )

        heading(f"1. Installing {APP} 1.4.0: its first version waits for its schema")
        await ship(cluster, "1.4.0", database, create=True)

        heading(f"2. Shipping {APP} 1.5.0, whose migration adds customers.loyalty_points")
        await ship(cluster, "1.5.0", database)

        heading(f"3. Shipping {APP} 1.6.0, whose migration has a typo")
        if await ship(cluster, "1.6.0", database):
            raise DemoFailed("the broken migration was released")
        if serving(cluster) != {"1.5.0"} or not deployment(cluster)["spec"].get("paused"):
            raise DemoFailed("the old version is not the one serving")
        pods = len(cluster.deployments.pods(APP))
        say(f"{APP} stays paused at 1.6.0; 1.5.0 keeps serving on {pods} pods")
        say("fix the migration and ship again, or `stagecraft migrate retry shop -n shop`")

    heading("Done")
    emit(
        "The gate paused each new version in the very write that shipped it, ran its\n"
        "migrations in a Job, and released it only after they succeeded; a failed migration\n"
        "left the previous version serving and said why. Nothing is left running."
    )


def main() -> int:
    logging.getLogger("kopf").setLevel(logging.ERROR)  # the narration says what matters
    workdir = Path(tempfile.mkdtemp(prefix="stagecraft-demo-"))
    try:
        asyncio.run(story(workdir))
    except DemoFailed as error:
        emit(f"\n{RED('demo failed')}: {error}", sys.stderr)
        return 1
    except KeyboardInterrupt:
        emit("\ninterrupted; cleaned up", sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
