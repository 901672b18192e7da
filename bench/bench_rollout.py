"""Benchmark of issue 5: the operator's own delay in sequencing migrations around rollouts.

The operator runs as the chart runs it (`python -m stagecraft.operator`, its gate webhook served
over TLS), a process of its own against the tests' API-server emulator in this process, which
calls the gate on every Deployment write as the API server does. The tests' Deployment controller
rolls Deployments out; a bench-side Job controller marks each migration Job Complete, with a run
document in its pod's termination message, a fixed `--job-seconds` after its creation (no
migration runs: that is the runner's time). Each application is a namespace with a Deployment
and its DatabaseMigration of the same name. For 1 and 200 applications at once:

- pre_deploy: the resources exist, the Deployments are created (gated at creation, migrated,
  released, rolled out), then a new image is shipped to every Deployment at once. Measured:
  the Job's completion written -> the Deployment written unpaused with the new hash approved.
- post_deploy (a fresh emulator and operator): Deployments rolled out and migrated, then a new
  image shipped to all at once. Measured: the Deployment's status written with its rollout
  complete (as the operator's own check reads it) -> the migration Job created.

Every moment is taken in the emulator's write path (a write listener), on one clock. The
simulated controllers' own time (the Job's duration, the rollout's) is reported apart. With one
application, the new image is shipped `--min-samples` times in a row to collect that many
samples. Results are printed and written to docs/benchmarks.md under "Rollout sequencing".

Usage: python bench/bench_rollout.py [--sizes 1,200] [--job-seconds 0.5] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `tests` and `bench` live at the repository root

import aiohttp  # noqa: E402
import kmock  # noqa: E402
from tests.operator.deployments import DeploymentController  # noqa: E402

from bench.common import write_results  # noqa: E402
from bench.operator_cluster import (  # noqa: E402
    OperatorProcess,
    declare_custom_resource,
    free_port,
    machine_notes,
    wait_until_watching,
    write_kubeconfig,
)
from bench.rollout_cluster import (  # noqa: E402
    CONTAINER,
    GATE_LABEL,
    JobSucceeder,
    Key,
    ListingEmulator,
    Recorder,
    gate_webhook,
    trust_webhook_certificate,
    webhook_certificate,
)
from stagecraft.operator.models import API_VERSION, KIND, PLURAL  # noqa: E402

HEADING = "## Rollout sequencing (issue 5)"
PRE_DEPLOY, POST_DEPLOY = "pre_deploy", "post_deploy"
NAME = "shop-api"  # each application's Deployment, and its DatabaseMigration
IMAGE = "registry.example/shop-api"
FIRST_TAG = 41
WATCHED = {PLURAL, "jobs", "deployments", "configmaps"}
PHASE_TIMEOUT = 600.0  # seconds for every application of a phase to get there
SETTLE_QUIET = 1.0  # seconds without a write (and an idle operator) that count as settled
IDLE_CPU_SECONDS = 0.05
TARGET_P99_SECONDS = 1.0  # issue 5
# The operator as shipped; the variants that proposed fixes to it (async admission handlers,
# event filters) were retired once the fixes shipped (6b19481, 8a6808b).
AS_SHIPPED = "stagecraft"
OPERATORS = {AS_SHIPPED: ["-m", "stagecraft.operator"]}
SHIP_RETRY_SECONDS = 1.0  # before a refused image update is sent again


@dataclass
class Samples:
    """Seconds per application and round of one measurement."""

    values: list[float] = field(default_factory=list)
    missing: int = 0  # never got there within the bench's wait: counted as infinitely late

    def add(
        self, ends: dict[Key, float], starts: dict[Key, float], keys: list[Key], missing: int = 0
    ) -> None:
        self.values += [ends[key] - starts[key] for key in keys]
        self.missing += missing

    @property
    def count(self) -> int:
        return len(self.values) + self.missing

    def rank(self, fraction: float) -> float:
        """Nearest rank, the missing ones last (infinite)."""
        ordered = [*sorted(self.values), *[math.inf] * self.missing]
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class ScenarioRun:
    operator: str
    strategy: str
    size: int
    rounds: int = 0
    operator_delay: Samples = field(default_factory=Samples)  # what issue 5 measures
    image_to_job: Samples = field(default_factory=Samples)  # pre_deploy: gate to Job (operator)
    image_to_release: Samples = field(default_factory=Samples)  # pre_deploy: the whole hold
    job_seconds: Samples = field(default_factory=Samples)  # Job created -> Complete (controller)
    rollout_seconds: Samples = field(default_factory=Samples)  # Deployment controller
    to_last: list[float] = field(default_factory=list)  # image shipped -> the last delay's end
    to_ready: list[float] = field(default_factory=list)  # image shipped -> every resource Ready
    operator_cpu: list[float] = field(default_factory=list)  # seconds per round
    requests: Counter[str] = field(default_factory=Counter)  # API requests, all rounds
    stuck: list[Key] = field(default_factory=list)  # never got the operator's step
    stuck_note: str = ""
    refused: int = 0  # image updates the API server refused (the gate did not answer in time)


def nearest_rank(values: list[float], fraction: float) -> float:
    return Samples(values).rank(fraction)


def median_or_none(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f}" if values else "-"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def namespaces(size: int) -> list[str]:
    return [f"shop-{index:03d}" for index in range(size)]


def image(tag: int) -> str:
    return f"{IMAGE}:{tag}"


def keys(spaces: list[str], tag: int) -> list[Key]:
    return [(namespace, NAME, image(tag)) for namespace in spaces]


def deployment(namespace: str, tag: int, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace, "labels": dict(GATE_LABEL)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": CONTAINER, "image": image(tag)}]},
            },
        },
    }


def database_migration(namespace: str, strategy: str) -> dict[str, Any]:
    """The Secret it names is never read by the operator (only a Job's pod would read it)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": strategy},
            "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
            "deployment": {"name": NAME, "containers": [CONTAINER]},
        },
    }


@dataclass
class Bench:
    """One emulated cluster with one operator process, for one strategy and size."""

    emulator: ListingEmulator
    recorder: Recorder
    jobs: JobSucceeder
    operator: OperatorProcess
    server_url: str
    options: argparse.Namespace
    spaces: list[str]
    refused: list[str] = field(default_factory=list)  # the API server's answers to refused writes

    async def wait(
        self,
        moments: dict[Key, float],
        tag: int,
        spaces: list[str] | None = None,
        timeout: float = PHASE_TIMEOUT,
    ) -> list[Key]:
        """Until every application has its moment; those that do not within `timeout` are
        returned (only when a timeout is given, else the bench fails)."""
        wanted = keys(self.spaces if spaces is None else spaces, tag)
        check = self.operator.check_alive
        return await self.recorder.wait_for(
            moments, wanted, timeout, check, fail=timeout == PHASE_TIMEOUT
        )

    async def create(self, plural: str, objects: list[dict[str, Any]]) -> None:
        group = {"deployments": "apps", PLURAL: "stagecraft.dev"}[plural]
        for obj in objects:
            await self.emulator.put_object(group, plural, obj)  # admitted, as a POST would be
            await asyncio.sleep(0)  # the emulator serves the watch streams between creates

    async def ship(self, tag: int) -> None:
        """A new image for every Deployment at once, each a PATCH over HTTP as kubectl sends it
        (so the API server's admission calls the gate)."""
        patch = {
            "spec": {
                "template": {"spec": {"containers": [{"name": CONTAINER, "image": image(tag)}]}}
            }
        }
        headers = {"Content-Type": "application/merge-patch+json"}

        async def one(session: aiohttp.ClientSession, namespace: str) -> None:
            url = f"{self.server_url}/apis/apps/v1/namespaces/{namespace}/deployments/{NAME}"
            deadline = time.monotonic() + self.options.delay_timeout
            while True:
                async with session.patch(url, json=patch, headers=headers) as response:
                    if response.status == 200:
                        return
                    text = await response.text()
                # Refused (the gate webhook did not answer in time): sent again, as a GitOps
                # tool's retry or a person would, until the bench gives up on it.
                self.refused.append(text)
                if response.status != 500 or time.monotonic() > deadline:
                    return
                await asyncio.sleep(SHIP_RETRY_SECONDS)

        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await asyncio.gather(*(one(session, namespace) for namespace in self.spaces))

    async def settle(self) -> None:
        """Until no Job is pending, nothing was written for a second and the operator is idle."""
        deadline = time.monotonic() + PHASE_TIMEOUT
        samples: list[tuple[float, float]] = []
        while True:
            moment = time.perf_counter()
            samples = [*samples, (moment, self.operator.cpu_seconds())][
                -int(SETTLE_QUIET / 0.1) - 1 :
            ]
            idle = samples[-1][1] - samples[0][1] < IDLE_CPU_SECONDS
            quiet = moment - samples[0][0] >= SETTLE_QUIET and idle
            if not self.jobs.busy and moment - self.recorder.last_write >= SETTLE_QUIET and quiet:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the operator kept working; it never settled")
            self.operator.check_alive()
            await asyncio.sleep(0.1)


async def _wait_until_serving(port: int, operator: OperatorProcess) -> None:
    """The webhook server answers (with failurePolicy Fail, Deployment writes fail until then)."""
    deadline = time.monotonic() + PHASE_TIMEOUT
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            operator.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the webhook server never listened on {port}") from None
            await asyncio.sleep(0.05)
        else:
            writer.close()
            await writer.wait_closed()
            return


async def start_profiler(bench: Bench, label: str) -> asyncio.subprocess.Process | None:
    """py-spy on the operator during a measured phase (--profile): the thread holding the GIL,
    so the samples show where the operator's CPU goes (it runs its handlers on one core)."""
    if bench.options.profile is None:
        return None
    output = Path(bench.options.profile) / f"{label}.txt"
    spy = Path(sys.executable).parent / "py-spy"
    arguments = ["record", "--pid", str(bench.operator.pid), "--format", "raw"]
    arguments += ["--output", str(output), "--rate", "250", "--gil", "--threads", "--nolineno"]
    profiler = await asyncio.create_subprocess_exec(
        spy, *arguments, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await asyncio.sleep(1.0)  # py-spy attaches
    return profiler


async def stop_profiler(profiler: asyncio.subprocess.Process | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        await profiler.wait()


async def set_up(bench: Bench, strategy: str) -> None:
    """The applications running FIRST_TAG, migrated, rolled out and settled; created
    `--setup-batch` at a time, each batch once the previous one is done (at once, pre_deploy's
    first releases can hang on the gate webhook, see the report)."""
    replicas, size = bench.options.replicas, bench.options.setup_batch
    for start in range(0, len(bench.spaces), size):
        batch = bench.spaces[start : start + size]
        resources = [database_migration(namespace, strategy) for namespace in batch]
        deployments = [deployment(namespace, FIRST_TAG, replicas) for namespace in batch]
        if strategy == PRE_DEPLOY:
            # The resources first, so that the gate knows the Deployments when they are created.
            await bench.create(PLURAL, resources)
            await wait_for_observed(bench, batch)
            await bench.create("deployments", deployments)
            await bench.wait(bench.recorder.released, FIRST_TAG, batch)
        else:
            await bench.create("deployments", deployments)
            await bench.wait(bench.recorder.rolled_out, FIRST_TAG, batch)
            await bench.create(PLURAL, resources)
        await bench.wait(bench.recorder.rolled_out, FIRST_TAG, batch)
        await bench.wait(bench.recorder.ready, FIRST_TAG, batch)
    await bench.settle()


async def wait_for_observed(bench: Bench, spaces: list[str]) -> None:
    """Every resource has a status: the operator (and its gate index) has seen it."""
    deadline = time.monotonic() + PHASE_TIMEOUT
    for namespace in spaces:
        while not (bench.emulator.stored("stagecraft.dev", PLURAL, namespace, NAME) or {}).get(
            "status"
        ):
            bench.operator.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator never reconciled {namespace}/{NAME}")
            await asyncio.sleep(0.05)


async def measure_round(bench: Bench, strategy: str, tag: int, run: ScenarioRun) -> None:
    """Ship `tag` to every Deployment at once; wait until everything is done and settled. An
    application that does not get the operator's step within `--delay-timeout` counts as never
    getting it, and ends the scenario (StuckApplications)."""
    recorder, spaces, timeout = bench.recorder, bench.spaces, bench.options.delay_timeout
    bench.emulator.asked.clear()
    cpu_before = bench.operator.cpu_seconds()
    profiler = await start_profiler(bench, f"{run.operator}-{strategy}-{len(spaces)}-{tag}")
    await bench.ship(tag)
    new = keys(spaces, tag)
    if strategy == PRE_DEPLOY:
        late = await bench.wait(recorder.released, tag, timeout=timeout)
        done = [key for key in new if key not in late]
        run.operator_delay.add(recorder.released, recorder.job_completed, done, missing=len(late))
        ends = recorder.released
        created = [key for key in new if key in recorder.job_created and key in recorder.shipped]
        run.image_to_job.add(recorder.job_created, recorder.shipped, created)
        released = [key for key in done if key in recorder.shipped]
        run.image_to_release.add(recorder.released, recorder.shipped, released)
    else:
        late = await bench.wait(recorder.job_created, tag, timeout=timeout)
        done = [key for key in new if key not in late]
        run.operator_delay.add(recorder.job_created, recorder.rolled_out, done, missing=len(late))
        ends = recorder.job_created
    run.refused += len(bench.refused)
    bench.refused.clear()
    if late:
        await stop_profiler(profiler)
        run.operator_cpu.append(bench.operator.cpu_seconds() - cpu_before)
        run.requests.update(bench.emulator.served)
        run.rounds += 1
        run.stuck = late
        raise StuckApplications(late)
    await bench.wait(recorder.rolled_out, tag)
    await bench.wait(recorder.ready, tag)
    await stop_profiler(profiler)
    first_shipped = min(recorder.shipped[key] for key in new)
    run.to_last.append(max(ends[key] for key in new) - first_shipped)
    run.to_ready.append(max(recorder.ready[key] for key in new) - first_shipped)
    run.job_seconds.add(recorder.job_completed, recorder.job_created, new)
    rollout_start = recorder.released if strategy == PRE_DEPLOY else recorder.shipped
    run.rollout_seconds.add(recorder.rolled_out, rollout_start, new)
    await bench.settle()
    run.operator_cpu.append(bench.operator.cpu_seconds() - cpu_before)
    run.requests.update(bench.emulator.served)
    run.rounds += 1


class StuckApplications(Exception):
    """Some applications never got the operator's step: later rounds would not be comparable."""


async def run_scenario(
    operator_name: str, strategy: str, size: int, options: argparse.Namespace, work: Path
) -> ScenarioRun:
    certificate, key = webhook_certificate(work)
    trust_webhook_certificate(certificate)
    port = free_port()
    emulator = ListingEmulator()
    declare_custom_resource(emulator)
    recorder = Recorder(pods_of=lambda namespace: emulator.stored_objects("", "pods", namespace))
    jobs = JobSucceeder(emulator, options.job_seconds)
    deployments = DeploymentController(emulator)
    emulator.write_listeners += [recorder.on_write, jobs.on_write, deployments.on_write]
    emulator.mutating_webhooks.append(gate_webhook(port))
    environment = {
        "STAGECRAFT_RUNNER_IMAGE": "stagecraft:bench",
        "STAGECRAFT_LIVENESS": "",
        "STAGECRAFT_METRICS_PORT": "0",
        "STAGECRAFT_WEBHOOK_CERT": str(certificate),
        "STAGECRAFT_WEBHOOK_KEY": str(key),
        "STAGECRAFT_WEBHOOK_PORT": str(port),
        # The operator runs the Stagecraft next to this bench (a checkout's src/, not whichever
        # one is installed); the bench's own variants import bench.*.
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
    }
    run = ScenarioRun(operator_name, strategy, size)
    rounds = max(1, math.ceil(options.min_samples / size))
    async with emulator, kmock.Server(emulator) as server:
        url = str(server.url).rstrip("/")
        kubeconfig = work / "kubeconfig"
        write_kubeconfig(kubeconfig, url)
        operator = OperatorProcess(
            OPERATORS[operator_name], environment, work / f"operator-{strategy}-{size}.log"
        )
        await operator.start(kubeconfig)
        bench = Bench(emulator, recorder, jobs, operator, url, options, namespaces(size))
        try:
            await wait_until_watching(emulator, WATCHED, operator)
            await _wait_until_serving(port, operator)
            await set_up(bench, strategy)
            for tag in range(FIRST_TAG + 1, FIRST_TAG + 1 + rounds):
                await measure_round(bench, strategy, tag, run)
        except StuckApplications:
            run.stuck_note = stuck_note(bench, run.stuck)  # reported; no further rounds
        finally:
            await operator.stop()
            await jobs.stop()
            await deployments.stop()
    return run


def seconds_or_never(seconds: float) -> str:
    return "never" if math.isinf(seconds) else ms(seconds)


def summary(samples: Samples) -> str:
    """median, p90, p99 and max cells (ms); an application that never got there is "never"."""
    cells = [samples.rank(fraction) for fraction in (0.5, 0.9, 0.99, 1.0)]
    return "| " + " | ".join(seconds_or_never(cell) for cell in cells) + " |"


def stuck_note(bench: Bench, stuck: list[Key]) -> str:
    """What the applications the operator never moved on look like when the bench gives up."""
    states: Counter[str] = Counter()
    for namespace, name, _ in stuck:
        resource = bench.emulator.stored("stagecraft.dev", PLURAL, namespace, name) or {}
        found = bench.emulator.stored("apps", "deployments", namespace, name) or {}
        conditions = (resource.get("status") or {}).get("conditions") or []
        ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
        paused = "paused" if (found.get("spec") or {}).get("paused") else "not paused"
        run = ((resource.get("status") or {}).get("lastRun") or {}).get("result")
        states[f"resource Ready={ready.get('status')} (last run {run}), Deployment {paused}"] += 1
    return "; ".join(f"{count} with {state}" for state, count in states.most_common())


MEASURED = {
    PRE_DEPLOY: "Job Complete written -> Deployment released",
    POST_DEPLOY: "rollout complete written -> Job created",
}


# Written from the runs of 2026-11-29 02:00-02:40 UTC on this machine: traces of the operator's
# handlers and lanes (timestamps printed around each reconcile, not kept), py-spy profiles
# (`--profile DIR`) and the request counts of the tables; the tree was ad96f16.
ANALYSIS = """### Where the time goes (issue 5)

**The reconciles are short; at 200 at once they queue for the interpreter.** Tracing a
pre_deploy round at 200 (before the lanes below): a finished Job's event reached its handler
6 to 20 ms (median) after the emulator stored the Job Complete, its reconcile then ran 30 to
120 ms (eight requests: the resource, the Deployment, the Job and its pods, the release, the
status, two Events), and the rest, 1.3 to 2.3 s at the median, it waited for a thread of kopf's
first-in, first-out pool behind the reconciles of other Deployments' changes. 24 threads
instead of 6, or a pool of 4 or 16 of its own for finished Jobs, did not shorten it: the
operator is bound by its one interpreter (3.2 to 3.9 s of CPU per round at 200, in rounds of
about 5 s, while the emulator and its controllers use the other core), and more threads only
made each reconcile longer (312 ms median with 16).

**What changed on 2026-11-29**, each measured with this bench before it was kept:

1. Deployment events reconcile their resources only when something decided on changed
   (`operator/deployment_changes.py`: images, `spec.paused`, the gate's annotations,
   generation, the rollout's phase), and pods are listed only when a decision reads them: API
   requests per Deployment and round went from 49 to 16 (pre_deploy) and 44 to 14
   (post_deploy; 15 while every replica's gate read the API server for a labelled Deployment
   its index has no gate for, until 6 below), the operator's CPU per round from 6.9 to about
   3.5 s. Alone, this did not move the p99s: the queue was shorter but still first-in,
   first-out.
2. The release is written before the status (the rollout waits for the release, not for the
   record), and a release the API server refuses is retried by the resync timer.
3. Reconciles asked for by Job and Deployment events go to `operator/lanes.py`: what ended (a
   Job, a rollout) before changes that start work, one queued reconcile per resource (it reads
   everything when it starts), and the handlers do not wait for them. Before, a Deployment's
   rollout-complete event waited behind its own previous event's reconcile, since kopf hands a
   Deployment's events to its handler one at a time. This brought pre_deploy's median at 200
   from 1.0-1.9 s to 0.5-0.7 s and its p99 from 1.8-2.3 s to 1.2-1.6 s. It moves waiting,
   it does not remove it: the whole hold (new image written -> released, the Job's 0.5 s
   included) was a median of 3.05 s and a p99 of 4.0 s at 200 just before (eb829d1, this
   bench) and 2.85 s and 4.5 s after, while "new image -> Job created" grew from a p99 of
   2.2 s to 3.3-3.9 s. That is the order wanted: before its Job starts, the old version runs
   on the old schema; after the migration, the old version runs on the new one until the
   release, and a failed migration is reported (Stalled) at once.

**Still on 2026-11-29, the cost per event and per request** (figures from this bench at 200,
each change measured before it was kept):

4. kopf built, on every watch event of every kind, the "essence" it compares for on.update
   handlers: a deep copy of the whole body, status included, and two more copies to clear its
   progress annotations. Only DatabaseMigrations have such handlers; for Deployments and Jobs
   it was a fifth of the operator's event loop. `operator/persistence.py` gives kopf a
   storage (its own annotation and format) that builds nothing for other kinds and leaves a
   resource's status out before copying.
5. `operator/kube.py` sends its requests through the kubernetes client's ApiClient
   (`param_serialize`, `call_api`) instead of its generated methods, whose pydantic
   validation converted each Job manifest into the client's models and back: a third of a
   reconcile's CPU. Operator CPU per round at 200: about 3.3 to 2.3 s (post_deploy).
6. A standalone operator (no peering, the chart's default of one replica) trusts its gate
   index instead of listing the namespace's resources for each opted-in Deployment it finds
   no gate for: one request less per post_deploy Deployment and round here.
7. The emulator, not the operator, was the bottleneck for the first second of each round: the
   bench process (API server, Deployment and Job controllers) used its whole core while the
   operator used a third of its own, waiting for answers (CPU sampled every 0.1 s from /proc).
   Its watch events are now serialised once for every watch instead of deep-copied per watch,
   reads and lists are serialised straight from the store, and stored objects are no longer
   changed in place, so writes, write listeners and its Deployment controller use them without
   copying. These are the test infrastructure's costs, which an API server written in Go on
   cores of its own does not have; the operator's requests and events are the same.
8. The end of a Job that no rollout waits for (post_deploy, manual; Jobs carry their strategy
   in the `stagecraft.dev/strategy` label) is reconciled after what is waited for and before
   other changes: post_deploy's rollout-complete reconciles no longer queue behind the
   recording of earlier Jobs' results. It moved post_deploy's median at 200 (0.66-0.71 s in
   two runs before, 0.41-0.55 s in four after), not clearly its p99.
9. `python -m stagecraft.operator`, the chart's command, now sets up logging (it logged
   nothing, not even a failed handler: a handler error of this session went unseen in the
   bench), without a line per followed event (`operator/logs.py`).

With 1 to 3 the p99s at 200 moved little (pre_deploy 1.3-1.5 s, post_deploy 1.7 s); 4 and 5
cut the operator's CPU, and 7 let the operator's requests be answered: pre_deploy's p99 at 200
ranged 0.81 to 0.86 s over four runs, post_deploy's 0.997 to 1.17 s. Tried and not kept then,
no change beyond the runs' spread: 8 or 16 reconcile threads instead of 4; the emulator keeping
its webhook connections open; larger garbage-collector thresholds in the operator; a switch
interval of 1 ms for the interpreter's lock.

**The session after (2026-11-29)**, each change measured with this bench, two or three runs:
that day the tree above gave p99s at 200 of 1.27-1.36 s (pre_deploy) and 1.27-1.32 s
(post_deploy) in two runs, and the same tree's p99s moved by up to 30% from one run to the
next, so the CPU and the requests per round are the steadier figures.

10. Revisits instead of kopf's timer (`lanes.later`): kopf added its finalizer to a resource
    when its timer started to apply and removed it when it stopped, 2 PATCHes and 2 more
    events per post_deploy round; kopf's patching alone was 13% of the operator's interpreter
    time in a profile at 200 (`--profile`). post_deploy's CPU per round went from 3.0-3.4 s
    to 2.2-2.5 s, its requests per Deployment from 14.1 to 12.1.
11. One kopf index handler for the DatabaseMigrations instead of two (kopf's bookkeeping per
    handler call, not the function, was the cost).
12. A reconcile that an event asked for reads the Deployment as the watch last delivered it
    (`operator/seen.py`), as a controller reading from an informer's cache does: requests per
    Deployment and round from 16 to 13 (pre_deploy) and 12 to 10 (post_deploy).
13. The operator freezes what it has built before kopf starts (`gc.freeze`, about 165,000
    objects): a full garbage collection, a stop of every handler and reconcile, went from
    110-140 ms to 7-19 ms.
14. A reconcile that a rollout or a pre_deploy Job's end asked for, and that creates a Job or
    releases a Deployment, writes its record (status, Events) on a lane after the other
    resources' such steps, and before its own resource's next reconcile in any case
    (`Reconciler.defer`). At 200 at once, each of those reconciles had made all the others
    wait for its status PATCH and Events. This is what moved the p99s: over five runs,
    pre_deploy 0.71-0.83 s (0.95-1.45 s with 10 to 13 alone) and post_deploy 0.40-0.48 s
    (0.62-1.24 s). Deferring every such record, kopf's create handler's included, made 1,000
    resources created at once (bench_operator.py) get their statuses after 13 s instead of
    about 5 s; only what is waited for defers. "New image -> Job created" is not shortened:
    those reconciles come after what ended, by design (see 3).

**Earlier (2026-11-28):** with the admission handlers as plain functions, pre_deploy at 200
deadlocked: the releases' PATCHes, sent from kopf's thread pool, waited for the gate webhook,
whose handler waited for a thread of the same pool; the handlers are coroutines since 6b19481.
Before the emulator answered lists from indexes (bench/rollout_cluster.py), its walks of the
whole store made the emulator the bottleneck and doubled the p99s at 200.

**What is left:** measure where the emulator and its controllers do not share the operator's
two cores (a real cluster or kind on a machine of its own), to tell the operator's own delay at
200 from this machine's. Per event, kopf's own work is now the largest part of the operator's
CPU (its logger, causes and handler bookkeeping for each of the about 7 Deployment events per
rollout), then `http.client`'s per-request cost. With one Deployment both delays are a few
tens of milliseconds.
"""


def delay_table(runs: list[ScenarioRun]) -> str:
    lines = [
        "| operator | strategy: operator's delay | Deployments at once | samples | median ms "
        "| p90 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        lines.append(
            f"| {run.operator} | {run.strategy}: {MEASURED[run.strategy]} | {run.size:,} "
            f"| {run.operator_delay.count} {summary(run.operator_delay)}"
        )
    held = (
        ("new image written (paused by the gate) -> Job created", "image_to_job"),
        (
            "new image written -> Deployment released (the whole hold, Job time included)",
            "image_to_release",
        ),
    )
    for what, attribute in held:
        for run in runs:
            samples: Samples = getattr(run, attribute)
            if samples.values:
                lines.append(
                    f"| {run.operator} | {PRE_DEPLOY}: {what} "
                    f"| {run.size:,} | {samples.count} {summary(samples)}"
                )
    return "\n".join(lines)


def controllers_table(runs: list[ScenarioRun], job_seconds: float) -> str:
    lines = [
        "| operator | strategy | Deployments at once | Job created -> Complete: median ms "
        "| max ms | rollout: median ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        jobs, rollouts = run.job_seconds, run.rollout_seconds
        if not jobs.values or not rollouts.values:
            continue
        lines.append(
            f"| {run.operator} | {run.strategy} | {run.size:,} | {ms(jobs.rank(0.5))} "
            f"| {ms(jobs.rank(1.0))} "
            f"| {ms(rollouts.rank(0.5))} | {ms(rollouts.rank(0.99))} | {ms(rollouts.rank(1.0))} |"
        )
    return "\n".join(lines) + (
        f"\n\nThe Job's time is the bench's Job controller ({job_seconds:g} s set, plus its "
        "scheduling in the bench's event loop); the rollout's runs from the release (pre_deploy) "
        "or the new image (post_deploy) to the status that reports it complete."
    )


def wall_table(runs: list[ScenarioRun]) -> str:
    lines = [
        "| operator | strategy | Deployments at once | rounds "
        "| image shipped -> last delay's end s "
        "| -> every resource Ready s | operator CPU s per round | API requests per Deployment "
        "| image updates refused |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        requests = sum(count for name, count in run.requests.items() if "WATCH" not in name)
        lines.append(
            f"| {run.operator} | {run.strategy} | {run.size:,} | {run.rounds} "
            f"| {median_or_none(run.to_last)} | {median_or_none(run.to_ready)} "
            f"| {median_or_none(run.operator_cpu)} "
            f"| {requests / (run.size * run.rounds):.1f} | {run.refused} |"
        )
    return "\n".join(lines) + (
        "\n\nWith one application the wall times and CPU are medians over the rounds. An image "
        "update the API server refused (the gate webhook did not answer within its 10 s) is sent "
        f"again {SHIP_RETRY_SECONDS:g} s later, as a GitOps tool or a person would; an application "
        "that does not get the operator's step within --delay-timeout counts as never getting it "
        "and ends its scenario (no further rounds)."
    )


def requests_table(runs: list[ScenarioRun]) -> str:
    """The API requests per Deployment and round of the largest size, by verb and resource (the
    gate webhook's calls and the bench's own image updates included, watch streams not)."""
    largest = max(run.size for run in runs)
    chosen = [run for run in runs if run.size == largest and run.rounds]
    if not chosen:
        return "(no complete round at the largest size)"
    kinds = sorted({kind for run in chosen for kind in run.requests if "WATCH" not in kind})
    header = " | ".join(f"{run.operator}, {run.strategy}" for run in chosen)
    lines = [
        f"| request ({largest:,} at once) | {header} |",
        "|---|" + "---:|" * len(chosen),
    ]
    for kind in kinds:
        cells = " | ".join(f"{run.requests[kind] / (run.size * run.rounds):.1f}" for run in chosen)
        lines.append(f"| `{kind}` | {cells} |")
    return "\n".join(lines)


def targets(runs: list[ScenarioRun]) -> str:
    lines = []
    for run in runs:
        worst = run.operator_delay.rank(0.99)
        verdict = "met" if worst < TARGET_P99_SECONDS else "MISSED"
        lines.append(
            f"- {run.operator}, {run.strategy}, {run.size:,} at once: p99 "
            f"{seconds_or_never(worst)} ms "
            f"(target under {ms(TARGET_P99_SECONDS)} ms): {verdict}"
        )
        if run.stuck:
            lines.append(
                f"  - {len(run.stuck)} of {run.size:,} never got the operator's step within "
                f"the bench's wait: {run.stuck_note}"
            )
    return "\n".join(lines)


def report(runs: list[ScenarioRun], options: argparse.Namespace, command: str) -> str:
    return f"""{HEADING}

`{command}`: the operator as the chart runs it (`python -m stagecraft.operator`, its gate
webhook over TLS; "stagecraft" in the tables), a process of its own against the tests'
API-server emulator in the bench's process, which calls the gate on every Deployment create and
update as the API server does (timeout 10 s, failurePolicy Fail, as the chart installs it). The
tests' Deployment controller (tests/operator/deployments.py) rolls out {options.replicas}
replicas per Deployment, one surge pod at a time; a bench-side Job controller marks each
migration Job Complete {options.job_seconds:g} s after its creation, with a successful run
document in its pod's termination message (no migration runs: that is the runner's time). Each
application is a namespace of its own with a Deployment and its DatabaseMigration. The new
image is shipped to every Deployment at once (concurrent PATCHes over HTTP); with one
application it is shipped {options.min_samples} times in a row for as many samples. Every
moment is the emulator storing the write, taken by a write listener in one process, on one
clock; post_deploy's "rollout complete" is the first Deployment status that the operator's own
check (`rollout.rollout_state`) reads as complete.

{machine_notes()}

### The operator's delay

{delay_table(runs)}

### The simulated controllers' own time

{controllers_table(runs, options.job_seconds)}

### Wall time

{wall_table(runs)}

API requests per Deployment in the round:

{requests_table(runs)}

### Targets of issue 5

{targets(runs)}

{ANALYSIS}"""


async def run_all(options: argparse.Namespace) -> list[ScenarioRun]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as temporary:
        folder = options.work or temporary
        plan = [
            (operator, strategy, int(size))
            for operator in options.operators.split(",")
            for strategy in options.strategies.split(",")
            for size in options.sizes.split(",")
        ]
        for operator, strategy, size in plan:
            work = Path(folder) / f"{operator}-{strategy}-{size}"
            work.mkdir(parents=True, exist_ok=True)
            run = await run_scenario(operator, strategy, size, options, work)
            runs.append(run)
            delay = run.operator_delay
            print(
                f"{operator}, {strategy} with {size}: delay median "
                f"{seconds_or_never(delay.rank(0.5))} ms, "
                f"p99 {seconds_or_never(delay.rank(0.99))} ms, max "
                f"{seconds_or_never(delay.rank(1.0))} ms; to the last "
                f"{median_or_none(run.to_last)} s; {len(run.stuck)} stuck {run.stuck_note}",
                flush=True,
            )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,200")
    parser.add_argument("--strategies", default=f"{PRE_DEPLOY},{POST_DEPLOY}")
    parser.add_argument("--job-seconds", type=float, default=0.5)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--operators",
        default=",".join(OPERATORS),
        help=f"of {', '.join(OPERATORS)}: the operator as shipped",
    )
    parser.add_argument(
        "--setup-batch", type=int, default=4, help="applications set up at a time before a round"
    )
    parser.add_argument(
        "--delay-timeout",
        type=float,
        default=60.0,
        help="seconds after the new image until an application without the operator's step "
        "counts as never getting it",
    )
    parser.add_argument(
        "--min-samples", type=int, default=20, help="rounds enough for this many samples"
    )
    parser.add_argument("--profile", help="folder for py-spy profiles of the measured rounds")
    parser.add_argument("--work", help="folder for the operators' logs (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md alone")
    options = parser.parse_args()
    command = "python " + " ".join(["bench/bench_rollout.py", *sys.argv[1:]])
    runs = asyncio.run(run_all(options))
    text = report(runs, options, command)
    print(text)
    if not options.no_write:
        write_results(HEADING, text)


if __name__ == "__main__":
    main()
