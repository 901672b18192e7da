"""`stagecraft migrate retry` and `migrate run --cluster`: request annotations written over HTTP
to an emulated API server through a kubeconfig, as a user's kubectl would."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from stagecraft.operator.requests import RunRequest, parse_run_request
from tests.cli.emulated_cluster import EmulatedCluster, run_stagecraft, write_kubeconfig
from tests.support.postgres_server import free_port

RETRY = "stagecraft.dev/retry"
RUN_REQUEST = "stagecraft.dev/run-request"
TOKEN = re.compile(r"^\d{8}T\d{6}Z-[A-Za-z0-9._-]+-[0-9a-f]{6}$")


def _spec(strategy: str) -> dict[str, Any]:
    return {
        "migrations": {"engine": "raw", "path": "/app/migrations", "strategy": strategy},
        "connection": {"secretKeyRef": {"name": "shop-db", "key": "url"}},
        "image": "registry.example/shop-migrations:7",
    }


async def test_retry_writes_a_fresh_token_and_reports_it_in_json(kube: EmulatedCluster) -> None:
    await kube.create_database_migration("shop", "shop-db", _spec("pre_deploy"))
    args = ("migrate", "retry", "shop-db", "-n", "shop", "--kubeconfig", str(kube.kubeconfig))

    first = await run_stagecraft(*args, "--output", "json")
    first_token = kube.annotations("shop", "shop-db")[RETRY]
    second = await run_stagecraft(*args)

    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {
        "version": 1,
        "kind": "retry-request",
        "namespace": "shop",
        "name": "shop-db",
        "annotation": RETRY,
        "value": first_token,
    }
    assert TOKEN.match(first_token)
    assert second.returncode == 0, second.stderr
    second_token = kube.annotations("shop", "shop-db")[RETRY]
    assert second_token != first_token  # a new token asks again
    assert f"{RETRY}={second_token}" in second.stdout


async def test_namespace_and_kubeconfig_default_as_for_kubectl(
    kube: EmulatedCluster, tmp_path: Path
) -> None:
    await kube.create_database_migration("shop", "shop-db", _spec("pre_deploy"))
    await kube.create_database_migration("default", "shop-db", _spec("pre_deploy"))

    from_context = await run_stagecraft(
        "migrate", "retry", "shop-db", env={"KUBECONFIG": str(kube.kubeconfig)}
    )
    other_context = await run_stagecraft(
        "migrate", "retry", "shop-db", "--kubeconfig", str(kube.kubeconfig),
        "--context", "emulator",
    )  # fmt: skip

    assert (from_context.returncode, other_context.returncode) == (0, 0)
    assert RETRY in kube.annotations("shop", "shop-db")  # the current context's namespace
    assert RETRY in kube.annotations("default", "shop-db")  # a context without one: default


async def test_a_missing_resource_is_named_with_exit_code_2(kube: EmulatedCluster) -> None:
    result = await run_stagecraft(
        "migrate", "retry", "nosuch", "-n", "shop", "--kubeconfig", str(kube.kubeconfig),
        "--output", "json",
    )  # fmt: skip
    assert result.returncode == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ClusterError"
    assert error["message"].startswith(
        f"no DatabaseMigration 'nosuch' in namespace 'shop' at {kube.server}; "
        "`kubectl get databasemigrations -n shop` lists"
    )


async def test_an_unreachable_api_server_is_exit_code_3(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    result = await run_stagecraft(
        "migrate", "retry", "shop-db", "-n", "shop", "--kubeconfig", str(kubeconfig)
    )
    assert result.returncode == 3
    assert "cannot reach the Kubernetes API server at http://127.0.0.1:" in result.stderr
    assert "not-a-real-token" not in result.stderr + result.stdout


async def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nosuch"
    result = await run_stagecraft("migrate", "retry", "shop-db", "--kubeconfig", str(missing))
    assert result.returncode == 2
    assert f"cannot load the Kubernetes configuration from {missing}" in result.stderr


async def test_run_request_is_bound_to_the_reviewed_plan(kube: EmulatedCluster) -> None:
    await kube.create_database_migration("shop", "reports", _spec("manual"))
    result = await run_stagecraft(
        "migrate", "run", "--cluster", "reports", "-n", "shop",
        "--plan", "684b699ac4419847", "--kubeconfig", str(kube.kubeconfig), "--output", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    value = kube.annotations("shop", "reports")[RUN_REQUEST]
    request = parse_run_request(value)
    assert request == RunRequest(token=request.token, plan="684b699ac4419847")
    assert TOKEN.match(request.token)
    document = json.loads(result.stdout)
    assert (document["kind"], document["annotation"], document["value"]) == (
        "run-request",
        RUN_REQUEST,
        value,
    )


async def test_run_request_without_a_plan_is_the_token(kube: EmulatedCluster) -> None:
    await kube.create_database_migration("shop", "reports", _spec("manual"))
    result = await run_stagecraft(
        "migrate", "run", "--cluster", "reports", "--kubeconfig", str(kube.kubeconfig)
    )
    assert result.returncode == 0, result.stderr
    assert TOKEN.match(kube.annotations("shop", "reports")[RUN_REQUEST])
    assert "asked the operator for a run of DatabaseMigration reports in namespace shop" in (
        result.stdout
    )


async def test_run_request_is_refused_for_a_strategy_that_runs_by_itself(
    kube: EmulatedCluster,
) -> None:
    await kube.create_database_migration("shop", "shop-db", _spec("post_deploy"))
    result = await run_stagecraft(
        "migrate", "run", "--cluster", "shop-db", "--kubeconfig", str(kube.kubeconfig)
    )
    assert result.returncode == 2
    assert "has strategy post_deploy: the operator runs it by itself" in result.stderr
    assert "stagecraft migrate retry shop-db -n shop" in result.stderr
    assert RUN_REQUEST not in kube.annotations("shop", "shop-db")


async def test_a_malformed_plan_hash_is_refused_before_anything_is_written(
    kube: EmulatedCluster,
) -> None:
    await kube.create_database_migration("shop", "reports", _spec("manual"))
    result = await run_stagecraft(
        "migrate", "run", "--cluster", "reports", "--plan", "HEAD~1",
        "--kubeconfig", str(kube.kubeconfig),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--plan: 'HEAD~1' is not a plan hash" in result.stderr
    assert RUN_REQUEST not in kube.annotations("shop", "reports")


async def test_local_run_flags_do_not_mix_with_cluster(kube: EmulatedCluster) -> None:
    mixed = await run_stagecraft(
        "migrate", "run", "--cluster", "reports", "--dry-run", "--path", "migrations",
        "--kubeconfig", str(kube.kubeconfig),
    )  # fmt: skip
    stray = await run_stagecraft("migrate", "run", "--plan", "684b699ac4419847")
    assert (mixed.returncode, stray.returncode) == (2, 2)
    assert "--path, --dry-run only apply to a run here: drop them" in mixed.stderr
    assert "--plan goes with --cluster NAME" in stray.stderr
