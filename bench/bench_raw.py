"""Benchmark of issue 2: N trivial raw migrations against a psql floor and dbmate.

For each N, three tools apply the same N migrations (one `CREATE TABLE` and one `INSERT` each) to
fresh databases of one durable PostgreSQL server (fsync on), each as a process of its own:

- the floor: one `psql -f` file that takes an advisory lock once and then, per migration, sends
  BEGIN, the migration's SQL, an INSERT into a tracking table and COMMIT;
- `stagecraft migrate run --engine raw`, the installed CLI, interpreter start included;
- `dbmate up --no-dump-schema` (dbmate 2.36.0 from tools/node), the peer.

With everything applied it then times the no-op: `stagecraft migrate plan` (and a no-op `run`)
against `dbmate status` (and a no-op `dbmate up`), and reads every process's peak resident memory
from wait4(). Each figure is the median of --repeat runs, the tools taking turns so that a slow
phase of the machine does not favour one of them. Results are printed and written to
docs/benchmarks.md under "Raw engine (issue 2)".

Usage: python bench/bench_raw.py [--quick] [--sizes 100,1000,5000] [--repeat 3] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `tests.support` lives at the repository root
STAGECRAFT = Path(sys.executable).parent / "stagecraft"  # the console script of this venv
if not STAGECRAFT.exists():
    raise SystemExit(
        f"{STAGECRAFT} is missing: run the bench with the project's virtual environment, "
        "`make bench` or `.venv/bin/python bench/bench_raw.py` after `make deps`"
    )

import psycopg  # noqa: E402
from tests.support.postgres_server import PostgresServer, find_bindir, running_server  # noqa: E402

from bench.common import write_results  # noqa: E402
from stagecraft.engines.urls import scrub  # noqa: E402

NODE_MODULES = ROOT / "tools" / "node" / "node_modules"
HEADING = "## Raw engine (issue 2)"
DEFAULT_SIZES = (100, 1000, 5000)
FLOOR_TABLE = "floor_migrations"
FLOOR_LOCK_KEY = 72_707_369  # any constant: the floor takes one advisory lock like the others
MIB = 1024 * 1024

# Targets of issue 2, as ratios from one run.
COLD_TARGET_RATIO = 1.10
COLD_TARGET_SIZES = (1000, 5000)
NOOP_TARGET_SECONDS = 0.150
NOOP_TARGET_SIZE = 5000
MEMORY_TARGET_MIB = 45.0

FLOOR = "psql -f (floor)"
STAGECRAFT_RUN = "stagecraft migrate run"
DBMATE_UP = "dbmate up"


def dbmate_binary() -> Path:
    """dbmate's own Go binary: the npm package's `.bin/dbmate` is a node script that spawns it,
    and node's start would be charged to dbmate."""
    for binary in sorted(NODE_MODULES.glob("@dbmate/*/bin/dbmate")):
        return binary
    raise SystemExit(f"dbmate is missing from {NODE_MODULES}; run `make node-tools`")


def migration_sql(index: int) -> str:
    return (
        f"CREATE TABLE bench_{index} (id integer PRIMARY KEY, note text NOT NULL);\n"
        f"INSERT INTO bench_{index} (id, note) VALUES (1, 'migration {index}');\n"
    )


def migration_name(index: int) -> str:
    return f"{index:05d}_create_bench_{index}.sql"


def write_raw_folder(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for index in range(1, count + 1):
        (folder / migration_name(index)).write_text(migration_sql(index), encoding="utf-8")


def write_dbmate_folder(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for index in range(1, count + 1):
        text = (
            f"-- migrate:up\n{migration_sql(index)}\n-- migrate:down\nDROP TABLE bench_{index};\n"
        )
        (folder / migration_name(index)).write_text(text, encoding="utf-8")


def write_floor_script(path: Path, count: int) -> None:
    """What every runner must at least send: psql runs each statement as its own round trip."""
    lines = [
        f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (version text PRIMARY KEY, "
        "checksum text NOT NULL, applied_at timestamptz NOT NULL, execution_ms integer NOT NULL, "
        "success boolean NOT NULL, method text NOT NULL);",
        f"SELECT pg_advisory_lock({FLOOR_LOCK_KEY});",
    ]
    for index in range(1, count + 1):
        sql = migration_sql(index)
        checksum = hashlib.sha256(sql.encode()).hexdigest()
        lines += [
            "BEGIN;",
            sql.rstrip("\n"),
            f"INSERT INTO {FLOOR_TABLE} VALUES "
            f"('{migration_name(index)}', '{checksum}', now(), 0, true, 'run');",
            "COMMIT;",
        ]
    lines.append(f"SELECT pg_advisory_unlock({FLOOR_LOCK_KEY});")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class Sample:
    seconds: float  # wall clock
    cpu_seconds: float  # user + system time of the process itself (not the server's)
    peak_mib: float


# Peak memory comes from wait4() on the measured process; but a process's maximum RSS includes
# the memory of the process it was forked from (Linux carries it over through fork and exec), so
# a small launcher, not this 40 MiB bench, forks it. The launcher also times it: fork to exit.
LAUNCHER = """
import os, sys, time
report, program = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(program[0], program)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
elapsed = time.perf_counter() - started
with open(report, "w") as out:
    out.write(f"{elapsed} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_process(command: list[str], *, env: dict[str, str] | None = None, secret: str) -> Sample:
    """Wall time from fork to exit, and the process's own peak RSS."""
    with tempfile.TemporaryFile() as output, tempfile.NamedTemporaryFile("r") as report:
        launcher = [sys.executable, "-I", "-S", "-c", LAUNCHER, report.name]
        done = subprocess.run(
            [*launcher, *command],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(
                f"{Path(command[0]).name} {command[1]} exited {done.returncode}:\n"
                + scrub(_tail(output), secret)
            )
        seconds, cpu_seconds, max_rss_kib = report.read().split()
    # ru_maxrss is in KiB on Linux
    return Sample(float(seconds), float(cpu_seconds), int(max_rss_kib) * 1024 / MIB)


def _tail(output: IO[bytes], limit: int = 4000) -> str:
    output.seek(0)
    return output.read().decode(errors="replace")[-limit:]


class Tools:
    """The three ways to apply a folder, as a user runs each of them."""

    def __init__(self, work: Path, server: PostgresServer) -> None:
        self.work = work
        self.server = server
        self.psql = str(find_bindir() / "psql")
        self.dbmate_program = str(dbmate_binary())

    def floor(self, script: Path, url: str) -> Sample:
        command = [self.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script), "-d", url]
        return run_process(command, secret=url)

    def stagecraft(self, command: str, folder: Path, url: str) -> Sample:
        arguments = ["migrate", command, "--engine", "raw", "--path", str(folder)]
        return run_process([str(STAGECRAFT), *arguments, "--database-url", url], secret=url)

    def dbmate(self, command: str, folder: Path, url: str) -> Sample:
        env = {**os.environ, "DATABASE_URL": f"{url}?sslmode=disable"}
        arguments = ["--no-dump-schema", "--migrations-dir", str(folder), command]
        return run_process([self.dbmate_program, *arguments], env=env, secret=url)


@contextlib.contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"'.encode())
        # Thousands of CREATE TABLEs write hundreds of MiB of WAL: without a checkpoint between
        # runs, the one that max_wal_size triggers lands in whichever tool's run comes next.
        admin.execute(b"CHECKPOINT")
    try:
        yield server.url(name)
    finally:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)'.encode())


def check_applied(url: str, tracking_table: str, count: int) -> None:
    with psycopg.connect(url) as connection:
        rows = connection.execute(f"SELECT count(*) FROM {tracking_table}".encode()).fetchone()
        tables = connection.execute(
            b"SELECT count(*) FROM pg_tables WHERE tablename LIKE 'bench%'"
        ).fetchone()
    assert rows is not None
    assert tables is not None
    if (rows[0], tables[0]) != (count, count):
        raise SystemExit(f"{tracking_table}: {rows[0]} rows and {tables[0]} tables, not {count}")


@dataclass
class SizeResult:
    count: int
    cold: dict[str, list[Sample]]
    noop: dict[str, list[Sample]]

    def cold_seconds(self, tool: str) -> float:
        return statistics.median(sample.seconds for sample in self.cold[tool])

    def noop_seconds(self, tool: str) -> float:
        return statistics.median(sample.seconds for sample in self.noop[tool])

    def cold_cpu_seconds(self, tool: str) -> float:
        return statistics.median(sample.cpu_seconds for sample in self.cold[tool])

    def peak_mib(self, tool: str) -> float:
        samples = self.cold.get(tool, []) + self.noop.get(tool, [])
        return max(sample.peak_mib for sample in samples)

    def ratio(self, tool: str) -> float:
        return self.cold_seconds(tool) / self.cold_seconds(FLOOR)

    def round_ratios(self, tool: str) -> list[float]:
        """The ratio within each round: how much the machine's other work moved the figure."""
        pairs = zip(self.cold[tool], self.cold[FLOOR], strict=True)
        return sorted(sample.seconds / floor.seconds for sample, floor in pairs)


@dataclass(frozen=True)
class Folders:
    raw: Path
    dbmate: Path
    floor_script: Path


def write_folders(work: Path, count: int) -> Folders:
    folders = Folders(
        raw=work / f"raw-{count}",
        dbmate=work / f"dbmate-{count}",
        floor_script=work / f"floor-{count}.sql",
    )
    write_raw_folder(folders.raw, count)
    write_dbmate_folder(folders.dbmate, count)
    write_floor_script(folders.floor_script, count)
    return folders


def measure_size(tools: Tools, work: Path, count: int, repeat: int) -> SizeResult:
    folders = write_folders(work, count)
    cold_runs: dict[str, tuple[Callable[[str], Sample], str]] = {
        FLOOR: (lambda url: tools.floor(folders.floor_script, url), FLOOR_TABLE),
        STAGECRAFT_RUN: (
            lambda url: tools.stagecraft("run", folders.raw, url),
            "stagecraft_migrations",
        ),
        DBMATE_UP: (lambda url: tools.dbmate("up", folders.dbmate, url), "schema_migrations"),
    }
    result = SizeResult(count, {tool: [] for tool in cold_runs}, {})
    for _ in range(repeat):
        for tool, (apply, tracking_table) in cold_runs.items():
            with fresh_database(tools.server) as url:
                result.cold[tool].append(apply(url))
                check_applied(url, tracking_table, count)
    noop_repeat = max(repeat, 5)
    with fresh_database(tools.server) as by_stagecraft, fresh_database(tools.server) as by_dbmate:
        tools.stagecraft("run", folders.raw, by_stagecraft)
        tools.dbmate("up", folders.dbmate, by_dbmate)
        noop_runs: dict[str, Callable[[], Sample]] = {
            "stagecraft migrate plan": lambda: tools.stagecraft("plan", folders.raw, by_stagecraft),
            "stagecraft migrate run": lambda: tools.stagecraft("run", folders.raw, by_stagecraft),
            "dbmate status": lambda: tools.dbmate("status", folders.dbmate, by_dbmate),
            "dbmate up": lambda: tools.dbmate("up", folders.dbmate, by_dbmate),
        }
        result.noop = {tool: [] for tool in noop_runs}
        for _ in range(noop_repeat):
            for tool, check in noop_runs.items():
                result.noop[tool].append(check())
        check_applied(by_stagecraft, "stagecraft_migrations", count)
        check_applied(by_dbmate, "schema_migrations", count)
    return result


def measure_startup(repeat: int) -> dict[str, list[Sample]]:
    """The fixed cost every stagecraft command pays before it touches a migration."""
    python = sys.executable
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "stagecraft --help": [str(STAGECRAFT), "--help"],
        "python -c 'import stagecraft.cli'": [python, "-c", "import stagecraft.cli"],
        "python -c 'import stagecraft.cli, psycopg'": [
            python,
            "-c",
            "import stagecraft.cli, psycopg",
        ],
    }
    samples: dict[str, list[Sample]] = {name: [] for name in commands}
    for _ in range(max(repeat, 5)):
        for name, command in commands.items():
            samples[name].append(run_process(command, secret=""))
    return samples


def startup_table(samples: dict[str, list[Sample]]) -> str:
    lines = ["| command | milliseconds | CPU ms | peak MiB |", "|---|---:|---:|---:|"]
    for name, runs in samples.items():
        seconds = statistics.median(sample.seconds for sample in runs)
        cpu = statistics.median(sample.cpu_seconds for sample in runs)
        peak = max(sample.peak_mib for sample in runs)
        lines.append(f"| `{name}` | {seconds * 1000:.0f} | {cpu * 1000:.0f} | {peak:.1f} |")
    return "\n".join(lines)


def warm_up(tools: Tools, work: Path) -> None:
    """One small untimed round: the first start of each program pays for cold file caches."""
    measure_size(tools, work / "warm-up", 10, 1)


def command_output(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return done.stdout.strip() or done.stderr.strip()


def machine_notes(server: PostgresServer, dbmate: str) -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    with psycopg.connect(server.url()) as connection:
        row = connection.execute(b"SHOW server_version").fetchone()
    postgres = row[0] if row else "unknown"
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB memory, PostgreSQL {postgres} "
        f"(durable: fsync on), Python {platform.python_version()}, "
        f"{command_output([dbmate, '--version'])}, "
        f"load average {load} at the end, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC"
    )


def cold_table(results: list[SizeResult]) -> str:
    lines = [
        "| N | tool | seconds | ratio to floor | ratio per round | ms per migration "
        "| CPU seconds | peak MiB |",
        "|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    for result in results:
        for tool in result.cold:
            seconds = result.cold_seconds(tool)
            spread = ", ".join(f"{ratio:.2f}" for ratio in result.round_ratios(tool))
            lines.append(
                f"| {result.count:,} | {tool} | {seconds:.3f} | {result.ratio(tool):.2f}x | "
                f"{spread} | {seconds / result.count * 1000:.3f} | "
                f"{result.cold_cpu_seconds(tool):.2f} | {result.peak_mib(tool):.1f} |"
            )
    return "\n".join(lines)


def noop_table(results: list[SizeResult]) -> str:
    lines = ["| N | no-op | milliseconds | CPU ms | peak MiB |", "|---:|---|---:|---:|---:|"]
    for result in results:
        for tool, samples in result.noop.items():
            cpu = statistics.median(sample.cpu_seconds for sample in samples)
            peak = max(sample.peak_mib for sample in samples)
            lines.append(
                f"| {result.count:,} | {tool} | {result.noop_seconds(tool) * 1000:.0f} | "
                f"{cpu * 1000:.0f} | {peak:.1f} |"
            )
    return "\n".join(lines)


def verdicts(results: list[SizeResult]) -> str:
    """The issue's targets, each with the figure that decides it."""
    lines = []
    for result in results:
        if result.count in COLD_TARGET_SIZES:
            ratio = result.ratio(STAGECRAFT_RUN)
            met = "met" if ratio <= COLD_TARGET_RATIO else "MISSED"
            lines.append(
                f"- cold apply at N = {result.count:,}: {ratio:.2f}x the floor "
                f"(target {COLD_TARGET_RATIO:.2f}x; dbmate {result.ratio(DBMATE_UP):.2f}x): {met}"
            )
        if result.count == NOOP_TARGET_SIZE:
            seconds = result.noop_seconds("stagecraft migrate plan")
            met = "met" if seconds < NOOP_TARGET_SECONDS else "MISSED"
            lines.append(
                f"- no-op plan at N = {result.count:,}: {seconds * 1000:.0f} ms "
                f"(target < {NOOP_TARGET_SECONDS * 1000:.0f} ms): {met}"
            )
            peak = max(result.peak_mib(STAGECRAFT_RUN), result.peak_mib("stagecraft migrate plan"))
            met = "met" if peak < MEMORY_TARGET_MIB else "MISSED"
            lines.append(
                f"- peak memory of stagecraft at N = {result.count:,}: {peak:.1f} MiB "
                f"(target < {MEMORY_TARGET_MIB:.0f} MiB): {met}"
            )
    return "\n".join(lines) or "- no size of the issue's targets was measured"


def section(
    results: list[SizeResult],
    startup: dict[str, list[Sample]],
    command: str,
    repeat: int,
    machine: str,
) -> str:
    return f"""{HEADING}

`{command}`: N trivial migrations (one `CREATE TABLE` and one `INSERT` each) applied to a fresh
database of a local PostgreSQL with fsync on, by three programs each started as a process of its
own, wall-clock time from spawn to exit (interpreter start included), median of {repeat}; the
tools take turns. The floor is one `psql -f` file that takes an advisory lock, then per migration
sends `BEGIN`, the migration's two statements, an `INSERT` into a tracking table with
Stagecraft's columns, and `COMMIT`, each as its own round trip. dbmate runs `up
--no-dump-schema` on the same SQL in its `-- migrate:up` format (its Go binary, not the npm
package's node wrapper). CPU seconds are the user and system time of the client process alone
(the server's work is not in them): they show a client's own overhead even when other work
shares the machine. Peak MiB is the process's maximum resident set size (wait4).

Machine: {machine}.

### Cold apply

{cold_table(results)}

### No-op, everything applied

`stagecraft migrate plan` reads and hashes every file and compares it with the tracking table;
`dbmate status` lists applied and pending migrations; the no-op `run` and `up` take their locks
and find nothing to do. Median of {max(repeat, 5)}.

{noop_table(results)}

### Start-up: what every command pays first

The interpreter, the CLI's imports and psycopg's, measured alone (median of {max(repeat, 5)}).

{startup_table(startup)}

### Targets of issue 2

{verdicts(results)}
"""


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of N") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("every N must be at least 1")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 100 once: a smoke test")
    parser.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES, help="e.g. 1000,5000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    sizes, repeat = ((100,), 1) if args.quick else (args.sizes, args.repeat)
    with tempfile.TemporaryDirectory() as work, running_server(durable=True) as server:
        tools = Tools(Path(work), server)
        if not args.quick:
            warm_up(tools, Path(work))
        results = []
        for count in sizes:
            print(f"N = {count:,} ...", file=sys.stderr, flush=True)
            results.append(measure_size(tools, Path(work), count, repeat))
        startup = measure_startup(repeat)
        machine = machine_notes(server, tools.dbmate_program)
    command = "python bench/bench_raw.py " + " ".join(sys.argv[1:])
    text = section(results, startup, command.strip(), repeat, machine)
    print(text)
    if not args.no_write:
        write_results(HEADING, text)


if __name__ == "__main__":
    main()
