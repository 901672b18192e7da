"""A Job controller and kubelet standing in for the cluster's: it runs each Job's pod for real.

For a Job the operator created, every container of the pod runs as a local process: the init
container's `cp` copies the migrations out of a local folder that plays the application image,
and the runner runs the real `stagecraft` command against the test's database. Paths inside the
pod (volume mounts, the image's files, the termination message file) are mapped to folders of the
test; environment variables are resolved from Secrets in the emulator, with `$(VAR)` expansion.
The pod's termination message and the Job's status are then written as Kubernetes would.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.operator.emulator import ApiServerEmulator, now, secret_value

PROCESS_TIMEOUT = 120.0  # seconds a container may run before the test is considered hung
_VARIABLE_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class ContainerOutcome:
    name: str
    exit_code: int
    message: str  # the termination message file's content
    log: str


@dataclass
class JobController:
    emulator: ApiServerEmulator
    workdir: Path
    images: dict[str, Path] = field(default_factory=dict)  # image -> folder playing its files
    runs: list[ContainerOutcome] = field(default_factory=list)  # every container that ran
    # Cleared, Jobs wait before their pod starts: a test can act while a Job is in flight.
    released: asyncio.Event = field(default_factory=asyncio.Event)
    # The Jobs of a DatabaseMigration named here also wait for its event: one resource's Job
    # can be held while another's runs.
    held: dict[str, asyncio.Event] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def on_write(self, event: str, plural: str, obj: dict[str, Any]) -> None:
        if plural == "jobs" and event == "ADDED":
            task = asyncio.create_task(self._run_job(obj))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ---- the Job controller ----------------------------------------------------------

    async def _write_job_status(self, job: dict[str, Any], status: dict[str, Any]) -> None:
        metadata = job["metadata"]
        if self.emulator.stored("batch", "jobs", metadata["namespace"], metadata["name"]):
            await self.emulator.write_status(
                "batch", "jobs", metadata["namespace"], metadata["name"], status
            )

    def runner_runs(self) -> list[ContainerOutcome]:
        return [outcome for outcome in self.runs if outcome.name == "migrate"]

    async def _run_job(self, job: dict[str, Any]) -> None:
        await self.released.wait()
        owners = [owner["name"] for owner in job["metadata"].get("ownerReferences") or []]
        for owner in owners:
            if owner in self.held:
                await self.held[owner].wait()
        started = now()
        await self._write_job_status(job, {"startTime": started, "active": 1})
        fail_job_codes = _fail_job_exit_codes(job)
        backoff_limit = int(job["spec"].get("backoffLimit", 6))
        failures = 0
        while True:
            outcome = await self._run_pod(job)
            if outcome.exit_code == 0:
                await self._finish(job, started, succeeded=True, reason="", message="")
                return
            failures += 1
            if outcome.exit_code in fail_job_codes:
                message = f"Container {outcome.name} failed with exit code {outcome.exit_code}"
                await self._finish(job, started, False, "PodFailurePolicy", message)
                return
            if failures > backoff_limit:
                message = "Job has reached the specified backoff limit"
                await self._finish(job, started, False, "BackoffLimitExceeded", message)
                return

    async def _finish(
        self, job: dict[str, Any], started: str, succeeded: bool, reason: str, message: str
    ) -> None:
        finished = now()
        condition_types = (
            ("SuccessCriteriaMet", "Complete") if succeeded else ("FailureTarget", "Failed")
        )
        conditions = [
            {
                "type": condition_type,
                "status": "True",
                "reason": reason or "CompletionsReached",
                "message": message or "Reached expected number of succeeded pods",
                "lastTransitionTime": finished,
            }
            for condition_type in condition_types
        ]
        status: dict[str, Any] = {"startTime": started, "conditions": conditions, "active": 0}
        if succeeded:
            status.update(succeeded=1, completionTime=finished)
        else:
            status.update(failed=1)
        await self._write_job_status(job, status)

    # ---- the kubelet -----------------------------------------------------------------

    async def _run_pod(self, job: dict[str, Any]) -> ContainerOutcome:
        namespace, job_name = job["metadata"]["namespace"], job["metadata"]["name"]
        pod_name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        pod_spec = job["spec"]["template"]["spec"]
        pod_dir = self.workdir / pod_name
        volumes = self._prepare_volumes(namespace, pod_spec.get("volumes", []), pod_dir)
        outcome = ContainerOutcome("none", 0, "", "")
        statuses: dict[str, list[dict[str, Any]]] = {
            "initContainerStatuses": [],
            "containerStatuses": [],
        }
        steps = [("initContainerStatuses", c) for c in pod_spec.get("initContainers", [])]
        steps += [("containerStatuses", c) for c in pod_spec["containers"]]
        for kind, container in steps:
            outcome = await self._run_container(namespace, container, volumes, pod_dir)
            self.runs.append(outcome)
            statuses[kind].append(_terminated_status(outcome))
            if outcome.exit_code != 0:
                break
        await self.emulator.put_object(
            "",
            "pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "labels": {
                        **job["spec"]["template"]["metadata"].get("labels", {}),
                        "batch.kubernetes.io/job-name": job_name,
                        "job-name": job_name,
                    },
                    "creationTimestamp": now(),
                },
                "spec": pod_spec,
                "status": {
                    "phase": "Succeeded" if outcome.exit_code == 0 else "Failed",
                    **statuses,
                },
            },
        )
        return outcome

    def _prepare_volumes(
        self, namespace: str, volumes: list[dict[str, Any]], pod_dir: Path
    ) -> dict[str, Path]:
        prepared: dict[str, Path] = {}
        for volume in volumes:
            folder = pod_dir / "volumes" / volume["name"]
            folder.mkdir(parents=True)
            if "configMap" in volume:
                config_map = self.emulator.stored(
                    "", "configmaps", namespace, volume["configMap"]["name"]
                )
                for key, value in ((config_map or {}).get("data") or {}).items():
                    (folder / key).write_text(value, encoding="utf-8")
            prepared[volume["name"]] = folder
        return prepared

    def _environment(self, namespace: str, container: dict[str, Any], home: Path) -> dict[str, str]:
        tools = Path(sys.executable).parent  # the Stagecraft image's `stagecraft` and `python`
        environment = {
            "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(home),
        }
        for variable in container.get("env", []):
            if "value" in variable:
                value = _VARIABLE_REFERENCE.sub(
                    lambda match: environment.get(match.group(1), match.group(0)),
                    variable["value"],
                )
                environment[variable["name"]] = value
                continue
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                secret = self.emulator.stored("", "secrets", namespace, reference["name"]) or {}
                found = secret_value(secret, reference["key"])
                if found is not None:
                    environment[variable["name"]] = found
        return environment

    async def _run_container(
        self, namespace: str, container: dict[str, Any], volumes: dict[str, Path], pod_dir: Path
    ) -> ContainerOutcome:
        home = pod_dir / "home" / container["name"]
        home.mkdir(parents=True)
        message_file = pod_dir / "termination" / container["name"]
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.touch()
        mapping = {
            mount["mountPath"]: volumes[mount["name"]]
            for mount in container.get("volumeMounts", [])
        }
        mapping[container.get("terminationMessagePath", "/dev/termination-log")] = message_file
        image_root = self.images.get(container["image"])
        command = [container["command"][0]] + [
            _translate(argument, mapping, image_root) for argument in container["command"][1:]
        ]
        command += [
            _translate(argument, mapping, image_root) for argument in container.get("args", [])
        ]
        environment = self._environment(namespace, container, home)
        executable = shutil.which(command[0], path=environment["PATH"]) or command[0]
        working_dir = container.get("workingDir")
        spawning = asyncio.ensure_future(
            asyncio.create_subprocess_exec(
                executable,
                *command[1:],
                env=environment,
                cwd=_translate(working_dir, mapping, image_root) if working_dir else home,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        )
        try:
            process = await asyncio.shield(spawning)
        except asyncio.CancelledError:
            # Cancelled while the process was being started (Ctrl-C in the demo, a test's
            # teardown): it starts all the same, after the signal that stopped everything else,
            # so it is stopped here rather than left running.
            started = await spawning
            started.kill()
            await started.wait()
            raise
        try:
            output, _ = await asyncio.wait_for(process.communicate(), PROCESS_TIMEOUT)
        except BaseException:  # cancelled at teardown or timed out: leave no process behind
            process.kill()
            await process.wait()
            raise
        exit_code = process.returncode if process.returncode is not None else -1
        log = output.decode(errors="replace")
        message = message_file.read_text(encoding="utf-8")[:4096]
        if not message and exit_code != 0 and _falls_back_to_logs(container):
            message = _log_tail(log)
        return ContainerOutcome(container["name"], exit_code, message, log)


def _translate(argument: str, mapping: dict[str, Path], image_root: Path | None) -> str:
    """A path inside the pod as the local path that plays it."""
    for inside in sorted(mapping, key=len, reverse=True):
        if argument == inside or argument.startswith(inside.rstrip("/") + "/"):
            return str(mapping[inside]) + argument[len(inside.rstrip("/")) :]
    if image_root is not None and argument.startswith("/"):
        return str(image_root) + argument
    return argument


def _fail_job_exit_codes(job: dict[str, Any]) -> set[int]:
    codes: set[int] = set()
    for rule in job["spec"].get("podFailurePolicy", {}).get("rules", []):
        exit_codes = rule.get("onExitCodes")
        if rule.get("action") == "FailJob" and exit_codes and exit_codes.get("operator") == "In":
            codes.update(exit_codes.get("values", []))
    return codes


def _falls_back_to_logs(container: dict[str, Any]) -> bool:
    return container.get("terminationMessagePolicy") == "FallbackToLogsOnError"


def _log_tail(log: str) -> str:
    """What the kubelet keeps of a failed container's log: the last 80 lines, 2048 bytes."""
    tail = "\n".join(log.splitlines()[-80:])
    return tail.encode()[-2048:].decode(errors="ignore")


def _terminated_status(outcome: ContainerOutcome) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "ready": False,
        "restartCount": 0,
        "state": {
            "terminated": {
                "exitCode": outcome.exit_code,
                "reason": "Completed" if outcome.exit_code == 0 else "Error",
                "message": outcome.message,
                "finishedAt": now(),
            }
        },
    }
