"""A Deployment controller standing in for the cluster's, beside the emulator (like JobController).

It follows kube-controller-manager's deployment controller as far as the operator can see it:

- A paused Deployment gets no new ReplicaSet: only its status is kept current (observedGeneration,
  the counts of the ReplicaSets it has, `Progressing=Unknown/DeploymentPaused`).
- An unpaused one whose pod template is new gets a ReplicaSet `<deployment>-<hash>` (the hash of
  the template, also its `pod-template-hash` label; a rollback finds and reuses the old one), with
  the `deployment.kubernetes.io/revision` annotation, then the rollout runs in small steps, each
  written to the store: a pod of the new ReplicaSet is created, it becomes ready, a pod of an old
  ReplicaSet starts terminating (deletionTimestamp set, kept by a finalizer), it is gone; one
  surge pod at a time and none unavailable. Scaling adds or removes pods the same way.
- Status as the real controller writes it: observedGeneration, replicas, updatedReplicas,
  readyReplicas, availableReplicas, unavailableReplicas, terminatingReplicas, and the conditions
  `Available` (MinimumReplicasAvailable / MinimumReplicasUnavailable) and `Progressing`
  (NewReplicaSetCreated, ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded,
  DeploymentPaused). A condition keeps its times while its status and reason stay the same.
  As in Kubernetes, NewReplicaSetAvailable may be reported while old pods are still terminating
  (terminating pods are not counted in `replicas`, only in `terminatingReplicas`).

Hooks for tests (all on the controller; names are Deployment names in the test namespace):

    controller.hold()                 # rollouts stop before their next step (the new ReplicaSet
                                      # is still created, so a held rollout shows it)
    await controller.step("shop-api") # while held: advance that rollout by one step
    controller.release()              # held rollouts run to completion by themselves
    controller.fail("shop-api")       # its current rollout exceeds its progress deadline:
                                      # Progressing=False/ProgressDeadlineExceeded, no more steps
                                      # until the template changes again
    controller.replica_sets("shop-api"), controller.pods("shop-api")   # what exists now
    template_hash(template)           # the pod-template-hash of a template

Steps are taken one at a time per Deployment; a change of the Deployment (a new template, a
resume, a scale) is picked up at the next step, as the real controller's resync would.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.operator.emulator import ApiServerEmulator, now

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
POD_FINALIZER = "stagecraft.test/kubelet"  # keeps a deleted pod visible while it terminates
DEFAULT_NAMESPACE = "shop"
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery's SafeEncodeString alphabet

Key = tuple[str, str]  # namespace, Deployment name


def template_hash(template: dict[str, Any]) -> str:
    """A stable hash of a pod template, spelt like Kubernetes' pod-template-hash (not equal to it:
    the real one is an FNV hash of the Go structure, which nothing outside Go can reproduce)."""
    template = copy.deepcopy(template)
    template.get("metadata", {}).get("labels", {}).pop(POD_TEMPLATE_HASH, None)
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_SAFE_ALPHABET[byte % len(_SAFE_ALPHABET)] for byte in digest[:10])


def _is_ready(pod: dict[str, Any]) -> bool:
    return any(
        condition.get("type") == "Ready" and condition.get("status") == "True"
        for condition in pod.get("status", {}).get("conditions", [])
    )


def _is_terminating(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _owned_by(obj: dict[str, Any], owner: dict[str, Any]) -> bool:
    uid = owner["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def _owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _condition(
    existing: list[dict[str, Any]], kind: str, status: str, reason: str, message: str
) -> dict[str, Any]:
    """A Deployment condition; its times stay while its status and reason are unchanged, so
    rewriting the same state is a no-op write (no event, no loop)."""
    for old in existing:
        if old.get("type") == kind and (old.get("status"), old.get("reason")) == (status, reason):
            return {**old, "message": message}
    moment = now()
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": moment,
        "lastTransitionTime": moment,
    }


@dataclass
class _Rollout:
    """What one sync sees of a Deployment: its ReplicaSets and their pods."""

    deployment: dict[str, Any]
    replica_sets: list[dict[str, Any]]
    pods: dict[str, list[dict[str, Any]]]  # ReplicaSet name -> its pods

    @property
    def desired(self) -> int:
        return int(self.deployment["spec"].get("replicas", 1))

    def live(self, replica_set: str) -> list[dict[str, Any]]:
        return [pod for pod in self.pods.get(replica_set, []) if not _is_terminating(pod)]

    def terminating(self) -> list[dict[str, Any]]:
        return [pod for pods in self.pods.values() for pod in pods if _is_terminating(pod)]


@dataclass
class DeploymentController:
    emulator: ApiServerEmulator
    namespace: str = DEFAULT_NAMESPACE
    held: bool = False
    _failed: set[tuple[str, str, str]] = field(default_factory=set)  # namespace, name, hash
    _steps_allowed: dict[Key, int] = field(default_factory=dict)
    _step_done: dict[Key, asyncio.Event] = field(default_factory=dict)
    _wakeups: dict[Key, asyncio.Event] = field(default_factory=dict)
    _workers: dict[Key, asyncio.Task[None]] = field(default_factory=dict)

    # ---- hooks for tests ---------------------------------------------------------------

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False
        for wakeup in self._wakeups.values():
            wakeup.set()

    async def step(self, name: str) -> None:
        """Advance a held rollout by one step and wait until that step is in the store."""
        key = (self.namespace, name)
        done = self._step_done.setdefault(key, asyncio.Event())
        done.clear()
        self._steps_allowed[key] = self._steps_allowed.get(key, 0) + 1
        self._wake(key)
        await done.wait()

    def fail(self, name: str) -> None:
        """The current rollout of `name` runs out of its progress deadline."""
        deployment = self.emulator.stored("apps", "deployments", self.namespace, name)
        assert deployment is not None, f"Deployment {name} does not exist"
        self._failed.add((self.namespace, name, template_hash(deployment["spec"]["template"])))
        self._wake((self.namespace, name))

    def replica_sets(self, name: str) -> list[dict[str, Any]]:
        deployment = self.emulator.stored("apps", "deployments", self.namespace, name)
        if deployment is None:
            return []
        return [
            replica_set
            for replica_set in self.emulator.stored_objects("apps", "replicasets", self.namespace)
            if _owned_by(replica_set, deployment)
        ]

    def pods(self, name: str) -> list[dict[str, Any]]:
        """Pods of all ReplicaSets of `name`, terminating ones included."""
        owners = self.replica_sets(name)
        return [
            pod
            for pod in self.emulator.stored_objects("", "pods", self.namespace)
            if any(_owned_by(pod, owner) for owner in owners)
        ]

    # ---- wiring ------------------------------------------------------------------------

    async def on_write(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        if plural == "deployments" and event in ("ADDED", "MODIFIED"):
            self._wake((obj["metadata"].get("namespace", ""), obj["metadata"]["name"]))

    async def stop(self) -> None:
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()

    def _wake(self, key: Key) -> None:
        self._wakeups.setdefault(key, asyncio.Event()).set()
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._work(key))

    async def _work(self, key: Key) -> None:
        wakeup = self._wakeups[key]
        while True:
            await wakeup.wait()
            wakeup.clear()
            if await self._sync(key):
                wakeup.set()  # more to do: the next step follows unless held

    # ---- the controller ----------------------------------------------------------------

    async def _sync(self, key: Key) -> bool:
        """One pass over one Deployment; True when a step was taken and another may follow."""
        namespace, name = key
        deployment = self.emulator.peek("apps", "deployments", namespace, name)
        if deployment is None or deployment["metadata"].get("deletionTimestamp"):
            return False
        new_hash = template_hash(deployment["spec"]["template"])
        if deployment["spec"].get("paused"):
            rollout = self._observe(deployment)
            current = f"{name}-{new_hash}"
            known = any(rs["metadata"]["name"] == current for rs in rollout.replica_sets)
            await self._write_status(rollout, current if known else None, paused=True)
            return False
        new_set = await self._ensure_new_replica_set(deployment, new_hash)
        rollout = self._observe(deployment)
        failed = (namespace, name, new_hash) in self._failed
        progressed = False
        if not failed and self._may_step(key):
            progressed = await self._take_step(rollout, new_set)
            if progressed and self._steps_allowed.get(key):
                self._steps_allowed[key] -= 1
            rollout = self._observe(deployment)
        await self._write_status(rollout, new_set, failed=failed)
        if progressed and key in self._step_done:
            self._step_done[key].set()
        if not progressed and self._steps_allowed.get(key):
            # Nothing left to do: a step asked for on a finished rollout is done.
            self._steps_allowed[key] = 0
            self._step_done.setdefault(key, asyncio.Event()).set()
        return progressed

    def _may_step(self, key: Key) -> bool:
        return not self.held or self._steps_allowed.get(key, 0) > 0

    def _observe(self, deployment: dict[str, Any]) -> _Rollout:
        namespace = deployment["metadata"]["namespace"]
        # Read without copies (many per step); a write copies what it changes.
        replica_sets = [
            replica_set
            for replica_set in self.emulator.peek_objects("apps", "replicasets", namespace)
            if _owned_by(replica_set, deployment)
        ]
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in self.emulator.peek_objects("", "pods", namespace):
            for replica_set in replica_sets:
                if _owned_by(pod, replica_set):
                    pods.setdefault(replica_set["metadata"]["name"], []).append(pod)
        return _Rollout(deployment, replica_sets, pods)

    async def _ensure_new_replica_set(self, deployment: dict[str, Any], new_hash: str) -> str:
        """The ReplicaSet of the current template, created or (a rollback) reused as the newest
        revision; the Deployment's revision annotation follows it."""
        namespace, name = deployment["metadata"]["namespace"], deployment["metadata"]["name"]
        set_name = f"{name}-{new_hash}"
        replica_sets = self._observe(deployment).replica_sets
        revisions = [
            int(rs["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, "0"))
            for rs in replica_sets
        ]
        current = next((rs for rs in replica_sets if rs["metadata"]["name"] == set_name), None)
        newest = max(revisions, default=0)
        if current is None:
            revision = newest + 1
            await self.emulator.put_object(
                "apps", "replicasets", self._replica_set(deployment, set_name, new_hash, revision)
            )
        else:
            revision = int(current["metadata"].get("annotations", {}).get(REVISION_ANNOTATION, 0))
            if revision < newest:  # a rollback: the old ReplicaSet becomes the newest revision
                revision = newest + 1
                current = copy.deepcopy(current)
                current["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = str(
                    revision
                )
                await self.emulator._replace(("apps", "replicasets", namespace, set_name), current)
        fresh = self.emulator.stored("apps", "deployments", namespace, name)
        annotations = (fresh or {}).get("metadata", {}).get("annotations", {})
        if fresh is not None and annotations.get(REVISION_ANNOTATION) != str(revision):
            fresh["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = str(revision)
            await self.emulator._replace(("apps", "deployments", namespace, name), fresh)
        return set_name

    def _replica_set(
        self, deployment: dict[str, Any], set_name: str, new_hash: str, revision: int
    ) -> dict[str, Any]:
        template = copy.deepcopy(deployment["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[POD_TEMPLATE_HASH] = new_hash
        selector = copy.deepcopy(deployment["spec"].get("selector", {}))
        selector.setdefault("matchLabels", {})[POD_TEMPLATE_HASH] = new_hash
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": set_name,
                "namespace": deployment["metadata"]["namespace"],
                "labels": template["metadata"]["labels"],
                "annotations": {REVISION_ANNOTATION: str(revision)},
                "ownerReferences": [_owner_reference(deployment)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
            "status": {"replicas": 0},
        }

    async def _take_step(self, rollout: _Rollout, new_set: str) -> bool:
        """The next single change of a rolling update with one surge pod and none unavailable
        (maxSurge 25% and maxUnavailable 25% round to that for small Deployments); False when
        there is nothing left to do."""
        namespace = rollout.deployment["metadata"]["namespace"]
        terminating = rollout.terminating()
        if terminating:  # the kubelet finishes a terminating pod
            pod = copy.deepcopy(terminating[0])
            pod["metadata"]["finalizers"] = []
            await self.emulator._replace(("", "pods", namespace, pod["metadata"]["name"]), pod)
            return True
        new_pods = rollout.live(new_set)
        not_ready = [pod for pod in new_pods if not _is_ready(pod)]
        if not_ready:
            await self._make_ready(not_ready[0])
            return True
        old_pods = [
            pod
            for replica_set in rollout.replica_sets
            if replica_set["metadata"]["name"] != new_set
            for pod in rollout.live(replica_set["metadata"]["name"])
        ]
        surplus = old_pods if len(old_pods) + len(new_pods) > rollout.desired else []
        if not surplus and len(new_pods) < rollout.desired:
            await self._create_pod(rollout, new_set)
            return True
        surplus = surplus or old_pods or new_pods[rollout.desired :]
        if surplus:  # scale an old ReplicaSet (or the new one, after a scale-down) down by one
            await self.emulator.remove_object("", "pods", namespace, surplus[0]["metadata"]["name"])
            return True
        return False

    async def _create_pod(self, rollout: _Rollout, set_name: str) -> None:
        replica_set = next(rs for rs in rollout.replica_sets if rs["metadata"]["name"] == set_name)
        template = replica_set["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{set_name}-{uuid.uuid4().hex[:5]}",
                "namespace": rollout.deployment["metadata"]["namespace"],
                "labels": copy.deepcopy(template["metadata"]["labels"]),
                "ownerReferences": [_owner_reference(replica_set)],
                "finalizers": [POD_FINALIZER],
            },
            "spec": copy.deepcopy(template.get("spec", {})),
            "status": {
                "phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False"}],
            },
        }
        await self.emulator.put_object("", "pods", pod)

    async def _make_ready(self, pod: dict[str, Any]) -> None:
        status = {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now()}],
        }
        metadata = pod["metadata"]
        await self.emulator.write_status(
            "", "pods", metadata["namespace"], metadata["name"], status
        )

    async def _write_replica_set_counts(self, rollout: _Rollout) -> None:
        namespace = rollout.deployment["metadata"]["namespace"]
        for replica_set in rollout.replica_sets:
            name = replica_set["metadata"]["name"]
            live = rollout.live(name)
            ready = sum(1 for pod in live if _is_ready(pod))
            counts = {"replicas": len(live), "readyReplicas": ready, "availableReplicas": ready}
            stored = self.emulator.peek("apps", "replicasets", namespace, name)
            if stored is None:
                continue
            updated = {**stored, "spec": {**stored["spec"], "replicas": len(live)}}
            updated["status"] = {**counts, "observedGeneration": stored["metadata"]["generation"]}
            await self.emulator._replace(("apps", "replicasets", namespace, name), updated)

    async def _write_status(
        self,
        rollout: _Rollout,
        new_set: str | None,
        *,
        failed: bool = False,
        paused: bool = False,
    ) -> None:
        await self._write_replica_set_counts(rollout)
        deployment = rollout.deployment
        metadata = deployment["metadata"]
        # Re-read: a step may have bumped the revision annotation, and the status must not undo
        # a concurrent spec change (it is written through the status subresource only).
        stored = self.emulator.peek("apps", "deployments", metadata["namespace"], metadata["name"])
        if stored is None:
            return
        existing = list(stored.get("status", {}).get("conditions", []))
        live = [pod for name in rollout.pods for pod in rollout.live(name)]
        updated = rollout.live(new_set) if new_set else []
        available = sum(1 for pod in live if _is_ready(pod))
        desired = rollout.desired
        max_unavailable = desired * 25 // 100
        status: dict[str, Any] = {
            "observedGeneration": metadata["generation"],
            "replicas": len(live),
            "updatedReplicas": len(updated),
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": max(len(live) - available, desired - available, 0),
            "terminatingReplicas": len(rollout.terminating()),
        }
        if available >= desired - max_unavailable:
            condition_available = _condition(
                existing, "Available", "True", "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )  # fmt: skip
        else:
            condition_available = _condition(
                existing, "Available", "False", "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )  # fmt: skip
        status["conditions"] = [
            condition_available,
            self._progressing(existing, rollout, new_set, failed=failed, paused=paused),
        ]
        for count in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if status[count] == 0:
                del status[count]  # the API server omits zero counts
        if status["unavailableReplicas"] == 0:
            del status["unavailableReplicas"]
        await self.emulator.write_status(
            "apps", "deployments", metadata["namespace"], metadata["name"], status
        )

    def _progressing(
        self,
        existing: list[dict[str, Any]],
        rollout: _Rollout,
        new_set: str | None,
        *,
        failed: bool,
        paused: bool,
    ) -> dict[str, Any]:
        if paused or new_set is None:
            return _condition(
                existing, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused"
            )
        if failed:
            return _condition(
                existing, "Progressing", "False", "ProgressDeadlineExceeded",
                f'ReplicaSet "{new_set}" has timed out progressing.',
            )  # fmt: skip
        new_pods = rollout.live(new_set)
        # As the real controller: complete once the new pods are available and no other pod is
        # counted, although old pods may still be terminating (they are not counted).
        complete = (
            len(new_pods) == rollout.desired
            and all(_is_ready(pod) for pod in new_pods)
            and all(
                not rollout.live(rs["metadata"]["name"])
                for rs in rollout.replica_sets
                if rs["metadata"]["name"] != new_set
            )
        )
        if complete:
            return _condition(
                existing, "Progressing", "True", "NewReplicaSetAvailable",
                f'ReplicaSet "{new_set}" has successfully progressed.',
            )  # fmt: skip
        if not new_pods:
            return _condition(
                existing, "Progressing", "True", "NewReplicaSetCreated",
                f'Created new replica set "{new_set}"',
            )  # fmt: skip
        return _condition(
            existing, "Progressing", "True", "ReplicaSetUpdated",
            f'ReplicaSet "{new_set}" is progressing.',
        )  # fmt: skip
