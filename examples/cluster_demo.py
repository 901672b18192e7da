"""`make demo`: the pre_deploy gate on a laptop, with no cluster.

It starts what the operator tests use (tests/operator): an emulated Kubernetes API server, the
real kopf operator with its admission webhooks, and stand-in Job and Deployment controllers
(the Job's containers run as local processes: the real `stagecraft migrate run`, on an embedded
SQLite database). Then it installs the example shop (examples/shop), ships a new image whose
migration adds a column, and a third image whose migration fails. A narrator tells, one line
per change, what it reads after every write the API server stores and while the story waits:
the Deployment's pause and pending hash, ReplicaSets, pods per version and state, the Job, the
DatabaseMigration's verdict and the SQLite schema. The story goes on only from states the
cluster reached, and stops with exit code 1 and a message when one never comes.

The images are folders (tmp/images/<version>/app/migrations) that the Job controller maps onto
/app/migrations. The Job's pod is held back a second so the paused rollout can be seen: the demo
says so where it happens.

It lives in examples/, not in the package: it imports the emulator and the stand-in controllers
from tests/operator (kmock, a dev dependency that `make demo` installs), the same code the
end-to-end tests run.

Run from the repository root: `.venv/bin/python examples/cluster_demo.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Ctrl-C while the operator's libraries load (nothing runs yet): exit quietly, as later on.
signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import yaml  # noqa: E402

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
GROUP, PLURAL = "stagecraft.dev", "databasemigrations"
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
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return lambda text: text
    return lambda text: f"\033[{code}m{text}\033[0m"


BOLD, DIM, GREEN, RED, YELLOW = (_style(code) for code in ("1", "2", "32", "31", "33"))


def emit(text: str, stream: Any = None) -> None:
    stream = stream or sys.stdout
    stream.write(text + "\n")
    stream.flush()


def say(text: str) -> None:
    emit(f"{DIM(f'{time.monotonic() - STARTED:5.1f}s')}  {text}")


def quote(text: str) -> None:
    """The operator's own words, indented under the line that led to them."""
    for paragraph in text.splitlines():
        wrapped = textwrap.fill(
            paragraph,
            100,
            initial_indent=" " * 9,
            subsequent_indent=" " * 11,
            break_long_words=False,
            break_on_hyphens=False,
        )
        emit(wrapped)


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


def deployment(cluster: Cluster) -> dict[str, Any]:
    stored = cluster.emulator.stored("apps", "deployments", NAMESPACE, APP)
    if stored is None:
        raise DemoFailed(f"Deployment {APP} is gone")
    return stored


def version_of(obj: dict[str, Any]) -> str:
    """The version in the image of a pod, ReplicaSet or Deployment (its template's)."""
    spec = obj["spec"].get("template", {}).get("spec") or obj["spec"]
    image_name: str = spec["containers"][0]["image"]
    return image_name.rsplit(":", 1)[1]


def serving(cluster: Cluster) -> set[str]:
    """The versions of the application's pods that are up and not terminating."""
    return {
        version_of(pod)
        for pod in cluster.deployments.pods(APP)
        if not pod["metadata"].get("deletionTimestamp")
    }


def replica_set_versions(cluster: Cluster) -> set[str]:
    return {version_of(replica_set) for replica_set in cluster.deployments.replica_sets(APP)}


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def pods_summary(cluster: Cluster) -> str:
    """`2 x 1.4.0 ready, 1 x 1.5.0 starting`: the application's pods by version and state."""
    counts: dict[tuple[str, str], int] = {}
    for pod in cluster.deployments.pods(APP):
        if pod["metadata"].get("deletionTimestamp"):
            state = "terminating"
        else:
            state = "ready" if is_ready(pod) else "starting"
        key = (version_of(pod), state)
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} x {version} {state}" for (version, state), n in sorted(counts.items()))


def read_schema(database: Path) -> str | None:
    """`customers(id, email, name), orders(...); 3 migrations recorded`, read with sqlite3."""
    if not database.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            tables = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' AND name != 'stagecraft_migrations' ORDER BY name"
                )
            ]
            described = []
            for table in tables:
                columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")')]
                described.append(f"{table}({', '.join(columns)})")
            recorded = 0
            if db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'stagecraft_migrations'"
            ).fetchone():
                (recorded,) = db.execute("SELECT count(*) FROM stagecraft_migrations").fetchone()
    except sqlite3.OperationalError:  # locked by the runner this very moment: read it next time
        return None
    if not described:
        return None
    return f"{'; '.join(described)}; {recorded} migrations recorded"


def job_state(job: dict[str, Any]) -> str:
    status = job.get("status", {})
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    for kind in ("Complete", "Failed"):
        if kind in conditions:
            return kind
    return "running" if status.get("active") else "created"


def job_states(cluster: Cluster) -> dict[str, str]:
    return {job["metadata"]["name"]: job_state(job) for job in cluster.jobs_of(RESOURCE)}


def deciding(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conditions that carry the operator's verdict: the True one, else those with a reason
    (a resource that waits has none True)."""
    true = [c for c in conditions if c.get("status") == "True"]
    return true or [c for c in conditions if c.get("reason")]


def verdict(conditions: list[dict[str, Any]]) -> str:
    shown = [f"{c['type']}/{c.get('reason', '')}" for c in conditions if c.get("status") == "True"]
    if not shown:
        reasons = sorted({c["reason"] for c in deciding(conditions)})
        shown = [f"waiting ({', '.join(reasons)})"] if reasons else ["no verdict yet"]
    return ", ".join(shown)


def conditions(cluster: Cluster) -> list[dict[str, Any]]:
    status = cluster.database_migration(RESOURCE).get("status") or {}
    found: list[dict[str, Any]] = status.get("conditions", [])
    return found


def condition(cluster: Cluster, kind: str) -> dict[str, Any]:
    status = cluster.database_migration(RESOURCE).get("status") or {}
    return condition_of(status, kind)


class Narrator:
    """One line per change seen in the emulated cluster's store or the database.

    It looks after every write the API server stores (a write listener) and whenever the story
    waits, so every state the story goes on from has been told first.
    """

    def __init__(self, cluster: Cluster, database: Path) -> None:
        self.cluster = cluster
        self.database = database
        self.told: dict[str, Any] = {}

    async def on_write(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        self.observe()

    def _changed(self, key: str, value: Any) -> bool:
        if self.told.get(key) == value:
            return False
        self.told[key] = value
        return True

    def observe(self) -> None:
        self._deployment()
        self._jobs()
        self._schema()
        self._replica_sets()
        self._pods()
        self._resource()

    def _replica_sets(self) -> None:
        for replica_set in self.cluster.deployments.replica_sets(APP):
            name = replica_set["metadata"]["name"]
            if self._changed(f"replicaset {name}", True):
                say(f"ReplicaSet {name} created for {version_of(replica_set)}")

    def _deployment(self) -> None:
        stored = self.cluster.emulator.stored("apps", "deployments", NAMESPACE, APP)
        if stored is None:
            return
        pending = (stored["metadata"].get("annotations") or {}).get(PENDING_HASH_ANNOTATION)
        paused = bool(stored["spec"].get("paused"))
        version = version_of(stored)
        if not self._changed("deployment", (version, paused, pending)):
            return
        if paused:
            hold = f"pending hash {pending[:8]}" if pending else "no pending hash"
            say(f"Deployment {APP} {version}: {YELLOW('paused')} by the gate ({hold})")
        else:
            say(f"Deployment {APP} {version}: {GREEN('unpaused')} by the operator, rolling out")

    def _jobs(self) -> None:
        for job in self.cluster.jobs_of(RESOURCE):
            name, state = job["metadata"]["name"], job_state(job)
            if not self._changed(f"job {name}", state):
                continue
            if state == "created":
                pod = job["spec"]["template"]["spec"]
                images = {c["image"] for c in pod.get("initContainers", []) + pod["containers"]}
                shown = ", ".join(sorted(i.rsplit("/")[-1] for i in images))
                say(f"Job {name} created: `stagecraft migrate run` (images {shown})")
            elif state == "running":
                say(f"Job {name}: its pod runs the runner on the SQLite database")
            elif state == "Complete":
                say(f"Job {name}: {GREEN('Complete')}")
            else:
                say(f"Job {name}: {RED('Failed')}")

    def _schema(self) -> None:
        schema = read_schema(self.database)
        if schema is not None and self._changed("schema", schema):
            say(f"schema: {schema}")

    def _pods(self) -> None:
        summary = pods_summary(self.cluster)
        if (summary or "pods" in self.told) and self._changed("pods", summary):
            say(f"pods: {summary or 'none'}")

    def _resource(self) -> None:
        stored = self.cluster.emulator.stored(GROUP, PLURAL, NAMESPACE, RESOURCE)
        if stored is None:
            return
        status = stored.get("status")
        if not status:
            return
        told = verdict(status.get("conditions", []))
        if self._changed("resource", told):
            say(f"DatabaseMigration {RESOURCE}: {told}")


async def wait_for(what: str, check: Callable[[], bool], narrator: Narrator) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        narrator.observe()
        if check():
            return
        if narrator.cluster.operator.errors:
            raise DemoFailed(f"the operator stopped: {narrator.cluster.operator.errors[0]!r}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"waited {WAIT_SECONDS:.0f} s and this never happened: {what}")
        await asyncio.sleep(0.02)


async def watch_for(seconds: float, narrator: Narrator) -> None:
    deadline = time.monotonic() + seconds
    await wait_for("nothing", lambda: time.monotonic() >= deadline, narrator)


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


async def ship(narrator: Narrator, version: str, *, create: bool = False) -> bool:
    """Write the Deployment with `version` and follow the gate; True if it was released."""
    cluster = narrator.cluster
    cluster.jobs.released.clear()  # hold the Job's pod a moment, so that the wait can be seen
    before = set(job_states(cluster))
    say(f"kubectl apply: Deployment {APP} with image {image(version)}")
    stored = await write_deployment(cluster, version, create=create)
    pending = (stored["metadata"].get("annotations") or {}).get(PENDING_HASH_ANNOTATION)
    if not stored["spec"].get("paused") or not pending:
        raise DemoFailed(f"the webhook did not pause {APP} {version}")
    say("  the API server's answer is already paused by the webhook in the same write")
    await wait_for("the migration Job", lambda: bool(set(job_states(cluster)) - before), narrator)
    (job,) = set(job_states(cluster)) - before
    await watch_for(HOLD_SECONDS, narrator)
    if version in serving(cluster) or version in replica_set_versions(cluster):
        raise DemoFailed(f"{version} started rolling out before its migrations ran")
    say(
        f"  (the demo held the Job's pod {HOLD_SECONDS:.0f} s: meanwhile "
        f"{', '.join(sorted(serving(cluster))) or 'nothing'} serves and no pod of {version} "
        "has started, nor any ReplicaSet)"
    )
    cluster.jobs.released.set()
    await wait_for("the Job to finish", lambda: job_states(cluster)[job] != "created", narrator)
    await wait_for(
        "the Job to finish", lambda: job_states(cluster)[job] in ("Complete", "Failed"), narrator
    )
    if job_states(cluster)[job] == "Failed":
        stalled_now = lambda: condition(cluster, "Stalled").get("status") == "True"  # noqa: E731
        await wait_for("the resource to stall", stalled_now, narrator)
        message = condition(cluster, "Stalled")["message"]
        quote(message.replace(str(narrator.database.parent), "<tmp>"))
        return False
    await wait_for("the release", lambda: not deployment(cluster)["spec"].get("paused"), narrator)
    replicas = manifest("deployment.yaml")["spec"]["replicas"]
    done = lambda: pods_summary(cluster) == f"{replicas} x {version} ready"  # noqa: E731
    await wait_for(f"{version} serving", done, narrator)
    # The operator releases first and records the run right after (the rollout waits for the
    # release, not for the record): the story moves on once both are told.
    ready = lambda: condition(cluster, "Ready").get("status") == "True"  # noqa: E731
    await wait_for("the resource to be Ready", ready, narrator)
    say(f"{GREEN('rolled out')}: every pod now runs {version}")
    return True


async def story(workdir: Path) -> str | None:
    database = workdir / "shop.db"
    heading("Starting an emulated Kubernetes API, the Stagecraft operator and its webhooks")
    async with running_cluster(workdir / "cluster") as cluster:
        narrator = Narrator(cluster, database)
        cluster.emulator.write_listeners.append(narrator.on_write)
        cluster.jobs.images.update(make_images(workdir))
        say(f"images {APP}:{', '.join(IMAGES)}, played by folders holding their migrations")
        secret = manifest("secret.yaml")
        say(f"kubectl apply: Secret {secret['metadata']['name']}, url sqlite:///<tmp>/shop.db")
        await cluster.create_secret(secret["metadata"]["name"], {"url": f"sqlite:///{database}"})
        resource = manifest("databasemigration.yaml")
        say(f"kubectl apply: DatabaseMigration {RESOURCE} (raw engine, pre_deploy)")
        await cluster.apply_database_migration(RESOURCE, resource["spec"])
        await wait_for(
            "the operator's verdict on the resource",
            lambda: bool(deciding(conditions(cluster))),
            narrator,
        )
        say(f"  (there is no Deployment {APP} yet; the operator says:)")
        quote(deciding(conditions(cluster))[0].get("message", ""))

        heading(f"1. Installing {APP} 1.4.0: even its first version waits for its schema")
        if not await ship(narrator, "1.4.0", create=True):
            raise DemoFailed("the first version's migrations failed")

        heading(f"2. Shipping {APP} 1.5.0, whose migration adds customers.loyalty_points")
        if not await ship(narrator, "1.5.0"):
            raise DemoFailed("the loyalty_points migration failed")

        heading(f"3. Shipping {APP} 1.6.0, whose migration has a typo")
        if await ship(narrator, "1.6.0"):
            raise DemoFailed("the broken migration was released")
        await watch_for(HOLD_SECONDS / 2, narrator)  # time for a wrong move to show
        if serving(cluster) != {"1.5.0"} or not deployment(cluster)["spec"].get("paused"):
            raise DemoFailed("the old version is not the one serving")
        say(f"{APP} stays paused at 1.6.0 and 1.5.0 keeps serving: {pods_summary(cluster)}")
        say("next: fix the migration and ship again, or `stagecraft migrate retry shop -n shop`")
        final_schema = read_schema(database)
        cluster.emulator.write_listeners.remove(narrator.on_write)

    return final_schema


def summary(final_schema: str | None) -> None:
    heading("Done")
    emit(
        "The gate paused each new version in the very write that shipped it, ran its\n"
        "migrations in a Job, and released it only after they succeeded; the failed migration\n"
        "left 1.5.0 serving and said why, with nothing of it applied.\n"
        f"Final schema: {final_schema}\n"
        "The operator thread, the controllers, the runner processes and the temporary files\n"
        "are gone: nothing is left running."
    )


def leftovers(workdir: Path) -> list[str]:
    """What of the demo would still be there: checked, not assumed, before saying it is gone."""
    found = [thread.name for thread in threading.enumerate() if thread.name == "kopf-operator"]
    found += [f"{workdir}"] if workdir.exists() else []
    tasks = Path("/proc/self/task")  # Linux: child processes (the runners) still alive
    if tasks.exists():
        children = {pid for task in tasks.iterdir() for pid in children_of(task)}
        found += [f"process {pid}" for pid in sorted(children)]
    return found


def children_of(task: Path) -> list[str]:
    try:
        return (task / "children").read_text().split()
    except OSError:  # the thread ended meanwhile, or the kernel does not list children
        return []


def main() -> int:
    logging.getLogger("kopf").setLevel(logging.ERROR)  # the narration says what matters
    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt from here on
    workdir = Path(tempfile.mkdtemp(prefix="stagecraft-demo-"))
    try:
        final_schema = asyncio.run(story(workdir))
    except DemoFailed as error:
        emit(f"\n{RED('demo failed')}: {error}", sys.stderr)
        return 1
    except Exception as error:  # a bug or an environment problem: say it, then show where
        emit(f"\n{RED('demo failed')}: unexpected {type(error).__name__}: {error}", sys.stderr)
        raise
    except KeyboardInterrupt:
        emit("\ninterrupted; cleaned up", sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    left = leftovers(workdir)
    if left:
        emit(
            f"\n{RED('demo failed')}: still there after cleaning up: {', '.join(left)}", sys.stderr
        )
        return 1
    summary(final_schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
