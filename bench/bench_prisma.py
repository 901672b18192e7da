"""Benchmark: N trivial Prisma migrations, `prisma migrate deploy` against Stagecraft's engine.

Both run as a user runs them, in a process of their own on a fresh database of one durable
PostgreSQL server (fsync on): Prisma CLI 6.19.3 offline (its WebAssembly schema engine through
the test's driver adapter, which sends each migration.sql as one query as Prisma's native engine
does), Stagecraft through its CLI. Timed: the cold apply of all N, and the no-op check once all
are applied (`prisma migrate status` and `prisma migrate deploy` against `stagecraft migrate
plan` and `run`). Each figure is the median of --repeat runs. Results are printed and written to
docs/benchmarks.md under "Prisma engine".

Usage: python bench/bench_prisma.py [--migrations 1000] [--repeat 3] [--no-write]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: `tests` lives at the repository root

import psycopg  # noqa: E402
from tests.engines.prisma_tools import SCHEMA, PrismaProject  # noqa: E402
from tests.support.postgres_server import PostgresServer, running_server  # noqa: E402

from bench.common import (  # noqa: E402
    Timing,
    fresh_database,
    machine_note,
    node_version,
    ratios,
    timing_rows,
    write_results,
)

STAGECRAFT = [sys.executable, "-m", "stagecraft"]
HEADING = "## Prisma engine"
CONFIG = ROOT / "tests" / "engines" / "node" / "prisma" / "prisma.config.ts"
FIRST_TIMESTAMP = 20240101000000


def write_project(root: Path, count: int) -> Path:
    """A Prisma project with `count` trivial migrations; returns its migrations folder."""
    folder = root / "migrations"
    folder.mkdir(parents=True)
    (root / "prisma.config.ts").write_text(CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    (root / "schema.prisma").write_text(SCHEMA, encoding="utf-8")
    (folder / "migration_lock.toml").write_text('provider = "postgresql"\n', encoding="utf-8")
    for index in range(count):
        migration = folder / f"{FIRST_TIMESTAMP + index}_bench_{index}"
        migration.mkdir()
        (migration / "migration.sql").write_text(
            f'-- CreateTable\nCREATE TABLE "bench_{index}" (\n    "id" INTEGER NOT NULL,\n\n'
            f'    CONSTRAINT "bench_{index}_pkey" PRIMARY KEY ("id")\n);\n',
            encoding="utf-8",
        )
    return folder


def _seconds(run: Callable[[], subprocess.CompletedProcess[str]], what: str) -> float:
    started = time.perf_counter()
    done = run()
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stdout}\n{done.stderr}")
    return elapsed


def prisma(root: Path, url: str, *args: str) -> float:
    project = PrismaProject(root, url)
    return _seconds(lambda: project.prisma(*args), f"prisma {' '.join(args)}")


def stagecraft(command: str, folder: Path, url: str) -> float:
    argv = [
        *STAGECRAFT,
        *("migrate", command, "--engine", "prisma"),
        *("--path", str(folder), "--database-url", url),
    ]
    return _seconds(
        lambda: subprocess.run(argv, capture_output=True, text=True, check=False),
        f"stagecraft migrate {command}",
    )


def plan_in_process(folder: Path, url: str) -> float:
    """The engine's own cost of a plan, without interpreter start-up and imports."""
    from stagecraft.engines import PlanOptions, get

    engine = get("prisma")
    started = time.perf_counter()
    plan = engine.plan(PlanOptions(path=folder, database_url=url))
    elapsed = time.perf_counter() - started
    assert (plan.pending, plan.problems) == ((), ()), plan.to_dict()
    return elapsed


def count_applied(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute(
            b"SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL"
        ).fetchone()
    assert row is not None
    return int(row[0])


def measure(server: PostgresServer, folder: Path, count: int, repeat: int) -> dict[str, Timing]:
    """Seconds per measurement; each tool's cold applies go to databases of their own."""
    root = folder.parent
    cold: dict[str, Callable[[str], float]] = {
        "prisma migrate deploy": lambda url: prisma(root, url, "migrate", "deploy"),
        "stagecraft migrate run": lambda url: stagecraft("run", folder, url),
    }
    migrated: dict[str, list[str]] = {name: [] for name in cold}
    times: dict[str, list[float]] = {name: [] for name in cold}
    # One untimed round warms the server's caches; then the tools take turns, so that a slow
    # phase of the machine does not favour one of them.
    for round_number in range(repeat + 1):
        for name, apply in cold.items():
            url = fresh_database(server)
            seconds = apply(url)
            migrated[name].append(url)
            if round_number:
                times[name].append(seconds)
    for name, urls in migrated.items():
        for url in urls:
            assert count_applied(url) == count, f"{name} left {url.rsplit('/', 1)[-1]} incomplete"
    results = {f"cold apply: {name}": Timing.of(times[name]) for name in cold}
    # The no-op checks run on a database the other tool migrated: both ways must be no-ops.
    by_prisma, by_stagecraft = (
        migrated["prisma migrate deploy"][0],
        migrated["stagecraft migrate run"][0],
    )
    noop: dict[str, Callable[[], float]] = {
        "prisma migrate status": lambda: prisma(root, by_stagecraft, "migrate", "status"),
        "prisma migrate deploy": lambda: prisma(root, by_stagecraft, "migrate", "deploy"),
        "stagecraft migrate plan": lambda: stagecraft("plan", folder, by_prisma),
        "stagecraft migrate run": lambda: stagecraft("run", folder, by_prisma),
        "stagecraft plan, in-process (engine only)": lambda: plan_in_process(folder, by_prisma),
    }
    for name, check in noop.items():
        results[f"no-op: {name}"] = Timing.of([check() for _ in range(repeat)])
    assert count_applied(by_stagecraft) == count == count_applied(by_prisma), "a no-op applied"
    return results


def section(results: dict[str, Timing], count: int, repeat: int) -> str:
    cold = ratios(
        results, "cold apply: stagecraft migrate run", "cold apply: prisma migrate deploy"
    )
    noop = ratios(results, "no-op: stagecraft migrate plan", "no-op: prisma migrate status")
    # A target counts as met only when the medians and the fastest runs both say so.
    cold_verdict = "meets" if max(cold) <= 1 else "misses"
    noop_verdict = "meets" if max(noop) <= 0.5 else "misses"
    rows = timing_rows(results)
    return f"""{HEADING}

`python bench/bench_prisma.py --migrations {count} --repeat {repeat}`: {count} trivial
migrations (one `CREATE TABLE` each, in Prisma's folder format) on a fresh database of a durable
local PostgreSQL (fsync on); Prisma CLI 6.19.3 through node {node_version()} against `stagecraft
migrate ... --engine prisma` (Python {platform.python_version()}), each a process of its own,
wall-clock seconds, median of {repeat} after one untimed round, on {machine_note()}. The
no-op rows run on a database the other tool migrated.

Prisma runs offline as the compatibility tests run it: its WebAssembly schema engine through
`@prisma/adapter-pg` with each `migration.sql` sent as one query, and with its uncleared 10 s
advisory-lock timer unref'd (without that, every `migrate deploy` would take 10 s more). Its
native schema engine, which this machine cannot download, may be faster.

| measurement | median s | fastest s |
|---|---|---|
{rows}

Stagecraft's cold apply takes {cold[0]:.2f}x `prisma migrate deploy`'s by the medians,
{cold[1]:.2f}x by the fastest runs ({cold_verdict} the target of at most 1x); its no-op plan
takes {noop[0]:.2f}x `prisma migrate status`'s by the medians, {noop[1]:.2f}x by the fastest
runs ({noop_verdict} the target of well under, taken as at most 0.5x). Where the time goes:

- Cold apply: both commit each migration. Prisma inserts the migration's row, runs the script as
  one autocommitted query, then updates the row twice (its steps, then `finished_at`): four
  statements and four commits (WAL flushes) per migration, each through the WebAssembly engine
  and the JavaScript adapter. Stagecraft runs the statements and inserts the finished row in
  one transaction: one commit per migration, plus its check that no other runner recorded the
  migration meanwhile.
- No-op plan: the engine's own work (list {count} folders, read and hash {count} files, one
  query) is the in-process row; the rest is the Python interpreter and its imports, against
  node's start-up and Prisma's loading of its CLI, its config and its WebAssembly engine.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work, running_server(durable=True) as server:
        folder = write_project(Path(work) / "app", args.migrations)
        results = measure(server, folder, args.migrations, args.repeat)
    text = section(results, args.migrations, args.repeat)
    print(text)
    if not args.no_write:
        write_results(HEADING, text)


if __name__ == "__main__":
    main()
