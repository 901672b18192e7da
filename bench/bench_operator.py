"""Benchmark of issue 4: how fast the operator reacts, against a bare kopf operator (the floor).

Each operator runs as a process of its own (`python -m stagecraft.operator`, and
bench/bare_operator.py, which only creates a Job and writes `status.lastRun.job`) against a fresh
API-server emulator (tests/operator/emulator.py) in this process, one after the other with the
same settings. For each size N:

1. load: N DatabaseMigrations (explicit `image` source, one shared Secret) are created at once;
   the time until every one has its Job and its status, and the operator's CPU time, per resource;
2. settle: a stand-in Job controller marks each Job Complete `--job-seconds` after its creation
   (no pod runs), until nothing has been written for a second;
3. probes: with the N resources present, `--probes` more are created one at a time, each after the
   previous one's status was written: their create-to-Job and create-to-status latencies give the
   median and p99 reaction;
4. memory: the operator's resident set (VmRSS) and its peak (VmHWM) from /proc.

The status write measured is the first that names the Job (`status.lastRun.job`): for Stagecraft
its Reconciling/JobRunning status, written in the same reconcile that creates the Job, so no Job
controller is needed for it. Times are taken in the emulator when it stores the object.
Results are printed and written to docs/benchmarks.md under "Operator (issue 4)".

Usage: python bench/bench_operator.py [--quick] [--sizes 1,100,1000] [--probes 100] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import math
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `tests` and `bench` live at the repository root

import kmock  # noqa: E402

from bench.common import write_results  # noqa: E402
from bench.operator_cluster import (  # noqa: E402
    NAMESPACE,
    CountingEmulator,
    JobCompleter,
    Memory,
    OperatorProcess,
    Timeline,
    database_migration,
    declare_custom_resource,
    free_port,
    machine_notes,
    self_signed_certificate,
    wait_until_watching,
    write_kubeconfig,
)
from stagecraft.operator.models import PLURAL  # noqa: E402

HEADING = "## Operator (issue 4)"
STAGECRAFT = "stagecraft"
BARE = "bare kopf"
DEFAULT_SIZES = (1, 100, 1000)
LOAD_TIMEOUT = 600.0  # seconds for N resources to get their Jobs and statuses
PROBE_TIMEOUT = 60.0
SETTLE_QUIET = 1.0  # seconds without a write that count as settled
SETTLE_TIMEOUT = 600.0
IDLE_CPU_SECONDS = 0.05  # operator CPU within SETTLE_QUIET that still counts as idle

# Targets of issue 4.
REACTION_RATIO_TARGET = 1.5
P99_TARGET_SECONDS = 1.0
MEMORY_TARGET_MIB = 150.0
TARGET_SIZE = 1000

SPEC = {
    "migrations": {"engine": "raw", "path": "/app/migrations"},
    "connection": {"secretKeyRef": {"name": "bench-db", "key": "url"}},
    "image": "registry.example/shop-api:41",
}


@dataclass(frozen=True)
class Contender:
    arguments: list[str]
    environment: dict[str, str]
    watches: set[str]  # the watch streams that show the operator is ready


CONTENDERS = {
    STAGECRAFT: Contender(
        ["-m", "stagecraft.operator"],
        {
            "STAGECRAFT_RUNNER_IMAGE": "stagecraft:bench",
            "STAGECRAFT_LIVENESS": "",
            "STAGECRAFT_METRICS_PORT": "0",
        },
        {PLURAL, "jobs", "deployments", "configmaps"},
    ),
    BARE: Contender([str(ROOT / "bench" / "bare_operator.py")], {}, {PLURAL}),
}


@dataclass(frozen=True)
class ScaleRun:
    operator: str
    size: int
    load_to_job: list[float]
    load_to_status: list[float]
    load_seconds: float  # first creation to last status
    load_cpu_seconds: float  # the operator's CPU time during the load
    settle_seconds: float  # first creation to the last write before the operator went idle
    settle_cpu_seconds: float
    load_requests: Counter[str]  # API requests until every status was written, by kind
    settle_requests: Counter[str]  # API requests until the operator stopped writing
    probe_to_job: list[float]
    probe_to_status: list[float]
    start_memory: Memory  # once the operator was watching, before any resource existed
    memory: Memory
    one_by_one: bool = False  # created each after the previous one's status, no probes


def database_secret() -> dict[str, Any]:
    """The Secret every resource names; the operator never reads it (only the Job's pod would)."""
    url = base64.b64encode(b"postgresql://app@db:5432/shop").decode()
    metadata = {"name": "bench-db", "namespace": NAMESPACE}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": {"url": url}}


def p99(values: list[float]) -> float:
    """Nearest rank: the value that 99% of the samples do not exceed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


async def settle(timeline: Timeline, jobs: JobCompleter, operator: OperatorProcess) -> float:
    """Wait until every Job is complete and the operator has neither written anything nor used
    CPU for a second (its work can be reads only, as the resync timer's are); the time then."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    samples: list[tuple[float, float]] = []  # (perf_counter, operator CPU seconds)
    while True:
        moment = time.perf_counter()
        samples = [*samples, (moment, operator.cpu_seconds())][-int(SETTLE_QUIET / 0.1) - 1 :]
        idle_cpu = samples[-1][1] - samples[0][1] < IDLE_CPU_SECONDS
        quiet = moment - samples[0][0] >= SETTLE_QUIET and idle_cpu
        if not jobs.busy and moment - timeline.last_write >= SETTLE_QUIET and quiet:
            return timeline.last_write
        if time.monotonic() > deadline:
            raise RuntimeError("the operator kept working; it never settled")
        operator.check_alive()
        await asyncio.sleep(0.1)


async def create_resources(emulator: CountingEmulator, names: list[str]) -> None:
    for name in names:
        await emulator.put_object("stagecraft.dev", PLURAL, database_migration(name, SPEC))
        await asyncio.sleep(0)  # let the emulator serve the watch streams between creates


async def load(
    emulator: CountingEmulator,
    timeline: Timeline,
    operator: OperatorProcess,
    size: int,
    one_by_one: bool,
) -> list[str]:
    """Create `size` resources, at once or each after the previous one's status; wait for all."""
    names = [f"load-{index:05d}" for index in range(size)]
    if one_by_one:
        return await probe(emulator, timeline, operator, names, gap=0.0)
    await create_resources(emulator, names)
    deadline = time.monotonic() + LOAD_TIMEOUT
    for name in names:
        operator.check_alive()
        await timeline.wait_for_status(name, max(1.0, deadline - time.monotonic()))
    return names


async def probe(
    emulator: CountingEmulator,
    timeline: Timeline,
    operator: OperatorProcess,
    names: list[str],
    gap: float,
) -> list[str]:
    for name in names:
        await create_resources(emulator, [name])
        operator.check_alive()
        await timeline.wait_for_status(name, PROBE_TIMEOUT)
        await asyncio.sleep(gap)
    return names


async def start_profiler(
    options: argparse.Namespace, operator: OperatorProcess, label: str
) -> asyncio.subprocess.Process | None:
    """py-spy sampling the operator during the probes (--profile): collapsed stacks, all threads,
    waiting included, so a reaction's wall time shows where it went."""
    if options.profile is None:
        return None
    output = Path(options.profile) / f"{label.replace(' ', '-')}.txt"
    spy = Path(sys.executable).parent / "py-spy"
    arguments = ["record", "--pid", str(operator.pid), "--format", "raw", "--output", str(output)]
    arguments += ["--rate", "250", "--idle", "--threads", "--nolineno", "--nonblocking"]
    profiler = await asyncio.create_subprocess_exec(
        spy, *arguments, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    await asyncio.sleep(1.0)  # py-spy attaches
    return profiler


async def stop_profiler(profiler: asyncio.subprocess.Process | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        await profiler.wait()


async def run_scale(
    name: str, size: int, options: argparse.Namespace, work: Path, *, one_by_one: bool = False
) -> ScaleRun:
    contender = CONTENDERS[name]
    emulator = CountingEmulator()
    declare_custom_resource(emulator)
    timeline = Timeline()
    jobs = JobCompleter(emulator, options.job_seconds)
    emulator.write_listeners += [timeline.on_write, jobs.on_write]
    async with emulator, kmock.Server(emulator) as server:
        kubeconfig = work / "kubeconfig"
        write_kubeconfig(kubeconfig, str(server.url).rstrip("/"))
        log = work / f"{name.replace(' ', '-')}-{size}.log"
        operator = OperatorProcess(contender.arguments, contender.environment, log)
        await operator.start(kubeconfig)
        try:
            await wait_until_watching(emulator, contender.watches, operator)
            start_memory = operator.memory()
            await emulator.put_object("", "secrets", database_secret())
            emulator.asked.clear()
            cpu_before = operator.cpu_seconds()
            names = await load(emulator, timeline, operator, size, one_by_one)
            cpu = operator.cpu_seconds() - cpu_before
            requests = Counter(emulator.served)
            load_to_job, load_to_status = timeline.latencies(names)
            load_seconds = max(timeline.status[n] for n in names) - min(
                timeline.created[n] for n in names
            )
            settled_at = await settle(timeline, jobs, operator)
            settle_seconds = settled_at - min(timeline.created[n] for n in names)
            settle_cpu = operator.cpu_seconds() - cpu_before
            settled = Counter(emulator.served)
            profiler = await start_profiler(options, operator, f"{name}-{size}")
            count = 0 if one_by_one else options.probes
            probe_names = [f"probe-{index:04d}" for index in range(count)]
            probes = await probe(emulator, timeline, operator, probe_names, options.gap)
            await stop_profiler(profiler)
            probe_to_job, probe_to_status = timeline.latencies(probes)
            memory = operator.memory()
        finally:
            await operator.stop()
            await jobs.stop()
    return ScaleRun(
        name,
        size,
        load_to_job,
        load_to_status,
        load_seconds,
        cpu,
        settle_seconds,
        settle_cpu,
        requests,
        settled,
        probe_to_job,
        probe_to_status,
        start_memory,
        memory,
        one_by_one,
    )


def reaction_table(runs: list[ScaleRun]) -> str:
    lines = [
        "| resources present | operator | create to Job: median ms | p99 ms "
        "| create to status: median ms | p99 ms | RSS at start MiB | RSS MiB | peak RSS MiB "
        "| KiB per resource |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        grown = (run.memory.rss_mib - run.start_memory.rss_mib) * 1024
        lines.append(
            f"| {run.size:,} | {run.operator} | {ms(statistics.median(run.probe_to_job))} "
            f"| {ms(p99(run.probe_to_job))} | {ms(statistics.median(run.probe_to_status))} "
            f"| {ms(p99(run.probe_to_status))} | {run.start_memory.rss_mib:.1f} "
            f"| {run.memory.rss_mib:.1f} | {run.memory.peak_mib:.1f} "
            f"| {grown / (run.size + len(run.probe_to_job)):.0f} |"
        )
    return "\n".join(lines)


def api_requests(requests: Counter[str]) -> int:
    return sum(count for key, count in requests.items() if not key.startswith("WATCH"))


def load_table(runs: list[ScaleRun]) -> str:
    lines = [
        "| resources created at once | operator | all statuses s | settled s "
        "| ms per resource: to status | settled | operator CPU ms per resource: to status "
        "| settled | API requests per resource: to status | settled "
        "| create to Job: median ms | p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        per = run.size
        lines.append(
            f"| {per:,} | {run.operator} | {run.load_seconds:.2f} | {run.settle_seconds:.2f} "
            f"| {ms(run.load_seconds / per)} | {ms(run.settle_seconds / per)} "
            f"| {ms(run.load_cpu_seconds / per)} | {ms(run.settle_cpu_seconds / per)} "
            f"| {api_requests(run.load_requests) / per:.1f} "
            f"| {api_requests(run.settle_requests) / per:.1f} "
            f"| {ms(statistics.median(run.load_to_job))} | {ms(p99(run.load_to_job))} |"
        )
    return "\n".join(lines)


def requests_table(runs: list[ScaleRun], size: int) -> str:
    """Which API requests each operator makes per resource, during the load of `size`."""
    chosen = {run.operator: run for run in runs if run.size == size}
    keys = sorted(
        {key for run in chosen.values() for key in run.settle_requests if "WATCH" not in key}
    )
    header = " | ".join(f"{name}: to status | {name}: until settled" for name in chosen)
    lines = [f"| request | {header} |", "|---|" + "---:|" * 2 * len(chosen)]
    for key in keys:
        cells = " | ".join(
            f"{run.load_requests[key] / size:.2f} | {run.settle_requests[key] / size:.2f}"
            for run in chosen.values()
        )
        lines.append(f"| `{key}` | {cells} |")
    return "\n".join(lines)


def by(runs: list[ScaleRun], operator: str, size: int) -> ScaleRun:
    return next(run for run in runs if run.operator == operator and run.size == size)


def ratio_lines(runs: list[ScaleRun], sizes: list[int]) -> list[str]:
    lines = []
    for size in sizes:
        ours, floor = by(runs, STAGECRAFT, size), by(runs, BARE, size)
        to_job = statistics.median(ours.probe_to_job) / statistics.median(floor.probe_to_job)
        to_status = statistics.median(ours.probe_to_status) / statistics.median(
            floor.probe_to_status
        )
        verdict = "met" if max(to_job, to_status) <= REACTION_RATIO_TARGET else "MISSED"
        lines.append(
            f"- median reaction with {size:,} present: {to_job:.2f}x the bare operator's to the "
            f"Job, {to_status:.2f}x to the status (target {REACTION_RATIO_TARGET}x): {verdict}"
        )
    return lines


def growth_line(runs: list[ScaleRun], operator: str, small: int, large: int) -> str:
    first, second = by(runs, operator, small), by(runs, operator, large)
    to_status = (second.load_seconds / large) / (first.load_seconds / small)
    wall = (second.settle_seconds / large) / (first.settle_seconds / small)
    cpu = (second.settle_cpu_seconds / large) / (first.settle_cpu_seconds / small)
    return (
        f"- {operator}: per resource, {large:,} created at once took {to_status:.2f}x the time "
        f"to their statuses, {wall:.2f}x the time until settled and {cpu:.2f}x the operator "
        f"CPU until settled of {small:,} (1.00x is linear)"
    )


def memory_lines(burst: ScaleRun, steady: ScaleRun | None) -> list[str]:
    lines = []
    if steady is not None:
        verdict = "met" if steady.memory.peak_mib < MEMORY_TARGET_MIB else "MISSED"
        lines.append(
            f"- operator memory with {steady.size:,} present, created one after another: peak "
            f"{steady.memory.peak_mib:.1f} MiB (target under {MEMORY_TARGET_MIB:.0f} MiB): "
            f"{verdict}"
        )
    verdict = "met" if burst.memory.peak_mib < MEMORY_TARGET_MIB else "MISSED"
    lines.append(
        f"- operator memory with {burst.size:,} present, created at once: peak "
        f"{burst.memory.peak_mib:.1f} MiB (target under {MEMORY_TARGET_MIB:.0f} MiB): {verdict}"
    )
    return lines


def targets(runs: list[ScaleRun], sizes: list[int], steady: ScaleRun | None) -> str:
    lines = ratio_lines(runs, sizes)
    if TARGET_SIZE in sizes:
        ours = by(runs, STAGECRAFT, TARGET_SIZE)
        worst = p99(ours.probe_to_job)
        verdict = "met" if worst < P99_TARGET_SECONDS else "MISSED"
        lines.append(
            f"- p99 create-to-Job with {TARGET_SIZE:,} present: {ms(worst)} ms "
            f"(target under {ms(P99_TARGET_SECONDS)} ms): {verdict}"
        )
        if steady is not None:
            worst = p99(steady.load_to_job)
            verdict = "met" if worst < P99_TARGET_SECONDS else "MISSED"
            lines.append(
                f"- p99 create-to-Job while {steady.size:,} are created one after another: "
                f"{ms(worst)} ms: {verdict}"
            )
        lines += memory_lines(ours, steady)
    grown = [size for size in sizes if size > 1]
    if len(grown) >= 2:
        for operator in (STAGECRAFT, BARE):
            lines.append(growth_line(runs, operator, grown[0], grown[-1]))
    return "\n".join(lines)


def one_by_one_table(runs: list[ScaleRun]) -> str:
    lines = [
        "| resources | operator | all statuses s | create to Job: median ms | p99 ms "
        "| create to status: median ms | p99 ms | RSS at start MiB | RSS MiB | peak RSS MiB "
        "| KiB per resource |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        grown = (run.memory.rss_mib - run.start_memory.rss_mib) * 1024
        lines.append(
            f"| {run.size:,} | {run.operator} | {run.load_seconds:.2f} "
            f"| {ms(statistics.median(run.load_to_job))} | {ms(p99(run.load_to_job))} "
            f"| {ms(statistics.median(run.load_to_status))} | {ms(p99(run.load_to_status))} "
            f"| {run.start_memory.rss_mib:.1f} | {run.memory.rss_mib:.1f} "
            f"| {run.memory.peak_mib:.1f} | {grown / run.size:.0f} |"
        )
    return "\n".join(lines)


def report(
    runs: list[ScaleRun], sizes: list[int], options: argparse.Namespace, every: list[ScaleRun]
) -> str:
    command = "python bench/bench_operator.py" + (" --quick" if options.quick else "")
    largest = max(sizes)
    one_by_one = [run for run in every if run.one_by_one]
    steady = next((run for run in one_by_one if run.operator == STAGECRAFT), None)
    return f"""{HEADING}

`{command}`: each operator as a process of its own against a fresh API-server emulator
(tests/operator/emulator.py, kmock 0.8, in the bench's process), one after the other with the
same kopf settings: Stagecraft's (`python -m stagecraft.operator`) and a bare kopf operator
(bench/bare_operator.py) whose only handler, on create, makes a Job and writes
`status.lastRun.job`, the floor any kopf operator pays. A DatabaseMigration takes its files
from an explicit `image` (no Deployment to look up). The status measured is the first that
names the Job: Stagecraft's Reconciling/JobRunning status, written in the reconcile that
creates the Job. A stand-in Job controller marks each Job Complete {options.job_seconds:g} s
after its creation (no pod runs), so Stagecraft's resources end Ready as in a cluster.
Times are taken in the emulator as it stores each object.

{machine_notes()}

### Reaction with N resources present

N resources are created and left to settle; then {options.probes} more are created one at a
time, each after the previous one's status (and a {options.gap:g} s pause). Memory is the
operator process's resident set (VmRSS) once it watches, before any resource exists ("at
start"), and after the probes, with its peak (VmHWM); KiB per resource divides the growth by
the resources then present.

{reaction_table(runs)}

### Load: N resources created at once

{load_table(runs)}

API requests per resource during the load of {largest:,} (watch streams not counted):

{requests_table(runs, largest)}

### N resources created one after another

Each is created once the previous one's status is written: the reaction as the count grows,
and the memory of N resources present without a burst's backlog.

{one_by_one_table(one_by_one)}

### Targets of issue 4

{targets(runs, sizes, steady)}
"""


async def run_all(options: argparse.Namespace, sizes: list[int]) -> list[ScaleRun]:
    runs: list[ScaleRun] = []
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as folder:
        work = Path(folder)
        certificate, key = self_signed_certificate(work)
        CONTENDERS[STAGECRAFT].environment.update(
            STAGECRAFT_WEBHOOK_CERT=str(certificate),
            STAGECRAFT_WEBHOOK_KEY=str(key),
            STAGECRAFT_WEBHOOK_PORT=str(free_port()),
        )
        plan = [(size, False) for size in sizes]
        if options.one_by_one:
            plan.append((options.one_by_one, True))
        for size, one_by_one in plan:
            for name in (STAGECRAFT, BARE):
                run = await run_scale(name, size, options, work, one_by_one=one_by_one)
                runs.append(run)
                reaction = run.load_to_job if one_by_one else run.probe_to_job
                print(
                    f"{name} with {size}{' one by one' if one_by_one else ''}: create-to-Job "
                    f"median {ms(statistics.median(reaction))} ms, p99 {ms(p99(reaction))} ms; "
                    f"load {run.load_seconds:.2f} s; peak {run.memory.peak_mib:.1f} MiB",
                    flush=True,
                )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument(
        "--one-by-one",
        type=int,
        default=TARGET_SIZE,
        help="also create this many one after another, for steady-state memory (0: skip)",
    )
    parser.add_argument("--profile", help="folder for py-spy profiles of the probes (py-spy)")
    parser.add_argument("--quick", action="store_true", help="sizes 1,20 and 10 probes")
    parser.add_argument("--no-write", action="store_true", help="leave docs/benchmarks.md alone")
    options = parser.parse_args()
    if options.quick:
        options.sizes, options.probes, options.one_by_one = "1,20", 10, 20
    sizes = [int(size) for size in options.sizes.split(",")]
    runs = asyncio.run(run_all(options, sizes))
    text = report([run for run in runs if not run.one_by_one], sizes, options, runs)
    print(text)
    if not options.no_write and not options.quick:
        write_results(HEADING, text)


if __name__ == "__main__":
    main()
