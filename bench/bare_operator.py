"""The framework's floor for bench_operator.py: a kopf operator that, when a DatabaseMigration is
created, only creates a Job for it and writes the Job's name into the status.

It runs like Stagecraft's operator (`python -m stagecraft.operator`): its own process, kopf's
login from the kubeconfig, the same kopf settings (standalone, whole cluster, no liveness
endpoint, kopf's own Events off), a sync handler on kopf's thread pool using the same kubernetes
client. It imports nothing from Stagecraft, so that its memory is kopf's and the client's alone.

Usage (what the bench does): KUBECONFIG=... python bench/bare_operator.py
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from kubernetes import client, config

# stagecraft.operator.models' names, written out so that no Stagecraft module is loaded.
GROUP, VERSION, PLURAL, KIND = (
    "stagecraft.dev",
    "v1alpha1",
    "databasemigrations",
    "DatabaseMigration",
)
CONNECTION_POOL_SIZE = 16  # as stagecraft.operator.kube: one connection per handler thread


def job_manifest(namespace: str, name: str, uid: str) -> dict[str, Any]:
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    container = {"name": "migrate", "image": "stagecraft:bench", "command": ["true"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{name}-migrate", "namespace": namespace, "ownerReferences": [owner]},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}},
    }


def register(registry: kopf.OperatorRegistry, api_client: client.ApiClient) -> None:
    batch = client.BatchV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)

    def create_job(namespace: str | None, name: str | None, uid: str | None, **_: Any) -> None:
        if not (namespace and name and uid):
            return
        manifest: Any = job_manifest(namespace, name, uid)
        batch.create_namespaced_job(namespace, manifest, _preload_content=False)
        status = {"lastRun": {"job": manifest["metadata"]["name"], "result": "Running"}}
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="create-job")(create_job)


def main() -> None:
    configuration = client.Configuration()
    config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    registry = kopf.OperatorRegistry()
    register(registry, client.ApiClient(configuration))
    kopf.on.login(registry=registry, id="login")(kopf.login_via_client)
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    asyncio.run(
        kopf.operator(
            registry=registry,
            settings=settings,
            standalone=True,
            clusterwide=True,
            liveness_endpoint=None,
        )
    )


if __name__ == "__main__":
    main()
