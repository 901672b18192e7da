"""kmock's Kubernetes scaffold with a store that behaves enough like an API server for kopf.

kmock 0.8's own emulator sets no resourceVersion, uid or generation, does not split `/status`,
ignores label selectors and answers creates with 200 (../shared/TESTING.md). This subclass keeps
kmock's discovery and HTTP serving and answers every object request from its own store:
uid, resourceVersion (bumped on every write), generation (bumped on spec changes) and
creationTimestamp; the status subresource; merge and JSON patches with `test` answered 422;
PUT with 409 on a stale resourceVersion; 201 on create and 409 on a taken name; label selectors
on list and watch; finalizers; and deletion of owned objects when their owner goes.
Controllers standing in for the cluster's (tests/operator/controllers.py) subscribe to writes.
Mutating admission webhooks registered in `mutating_webhooks` are called over HTTP with an
AdmissionReview on every create and update of their resource, as the API server calls them.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import importlib.resources
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import parsing as kmock_parsing

REQUEST_LOG_LIMIT = 200
Key = tuple[str, str, str, str]  # group, plural, namespace ("" when cluster-scoped), name
# A write listener is told the event, the plural and the object, which it reads and never changes.
WriteListener = Callable[[str, str, dict[str, Any]], Awaitable[None]]


_kmock_parse_path = kmock_parsing.parse_path


def _parse_path(path: str) -> kmock_parsing.ParsedPath:
    """kmock 0.8 reads `/api/v1/namespaces[/NAME[/status]]` as the prefix of a namespaced path
    and fails (HTTP 500) or finds nothing; they are the cluster-scoped Namespace objects, which
    kopf lists and watches when it serves namespaces by name, glob or label."""
    parts = path.strip("/").split("/")
    namespace_object = len(parts) <= 4 or (len(parts) == 5 and parts[4] in ("status", "finalize"))
    if parts[:1] == ["api"] and parts[2:3] == ["namespaces"] and namespace_object:
        name = parts[3] if len(parts) > 3 else None
        subresource = parts[4] if len(parts) > 4 else None
        return kmock_parsing.ParsedPath("", parts[1], "namespaces", None, name, subresource)
    return _kmock_parse_path(path)


kmock_parsing.parse_path = _parse_path


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    return [part.replace("~1", "/").replace("~0", "~") for part in path.split("/")[1:]]


def _apply_json_operation(document: Any, operation: dict[str, Any]) -> None:
    *parents, last = _pointer(operation["path"])
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    if op == "test":
        current = node[int(last)] if isinstance(node, list) else node.get(last)
        if current != operation.get("value"):
            raise ApiError(422, "Invalid", f"test failed at {operation['path']}")
    elif op == "remove":
        del node[int(last) if isinstance(node, list) else last]
    elif op in ("add", "replace"):
        value = copy.deepcopy(operation["value"])
        if isinstance(node, list):
            if last == "-":
                node.append(value)
            elif op == "add":
                node.insert(int(last), value)
            else:
                node[int(last)] = value
        else:
            node[last] = value
    else:
        raise ApiError(422, "Invalid", f"unsupported JSON patch operation {op!r}")


def json_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    document = _copy(target)
    try:
        for operation in operations:
            _apply_json_operation(document, operation)
    except (KeyError, IndexError, ValueError, TypeError) as error:
        raise ApiError(422, "Invalid", f"cannot apply JSON patch: {error!r}") from error
    return document


def matches_selector(labels: dict[str, str], selector: str | None) -> bool:
    """Equality-based label selectors (`a=b,c!=d,e`), the kind kopf and our code send."""
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class MutatingWebhook:
    """One webhook of a MutatingWebhookConfiguration, as far as the emulator needs it."""

    name: str
    group: str
    plural: str
    url: Callable[[], str]  # asked at each call: a restarted operator serves on another port
    operations: tuple[str, ...] = ("CREATE", "UPDATE")
    failure_policy: str = "Fail"
    timeout_seconds: float = 10.0  # the API server's default timeoutSeconds
    username: str = "kubernetes-admin"  # the requests' userInfo (the emulator has no auth)


@dataclass(frozen=True)
class Asked:
    """What one request the emulator served asked of a kind of object."""

    method: str  # the HTTP method; WATCH for a watch
    group: str
    resource: str  # the plural, with its subresource: databasemigrations/status
    named: bool  # of one object, not of a collection


@dataclass
class _Watch:
    group: str
    plural: str
    namespace: str | None
    selector: str | None
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.KubernetesScaffold):
    _store: dict[Key, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _watches: list[_Watch] = attrs.field(factory=list, init=False)
    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    write_listeners: list[WriteListener] = attrs.field(factory=list, init=False)
    served_watches: set[str] = attrs.field(factory=set, init=False)  # plurals kopf watches
    asked: Counter[Asked] = attrs.field(factory=Counter, init=False)  # every request served
    mutating_webhooks: list[MutatingWebhook] = attrs.field(factory=list, init=False)
    # Objects whose events no watch receives (put_object_unwatched).
    _unwatched: set[Key] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock's own load_bundled() uses a deprecated importlib call (an error under -W error).
        bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz")
        self.resources.load_data(gzip.decompress(bundled.read_bytes()))

    # ---- the store, for controllers and assertions -------------------------------------

    def stored(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        stored = self._store.get((group, plural, namespace, name))
        return _copy(stored) if stored is not None else None

    def stored_objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        return [_copy(self._store[key]) for key in self._stored_keys(group, plural, namespace)]

    def peek_objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The stored objects themselves, not copies: for simulated controllers, which read
        many objects per step and copy only the one they change (a write replaces it; no
        stored object is changed in place)."""
        return [self._store[key] for key in self._stored_keys(group, plural, namespace)]

    def peek(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object itself, as peek_objects: read it, or copy it to change it."""
        return self._store.get((group, plural, namespace, name))

    def _stored_keys(self, group: str, plural: str, namespace: str | None) -> list[Key]:
        """The keys of a kind's objects (in a namespace, or all), in order."""
        return sorted(
            key for key in self._store if key[:2] == (group, plural) and namespace in (None, key[2])
        )

    async def put_object(self, group: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        namespace = obj.get("metadata", {}).get("namespace", "")
        return await self._create(group, plural, namespace, obj, keep_status=True)

    async def put_object_unwatched(
        self, group: str, plural: str, obj: dict[str, Any]
    ) -> dict[str, Any]:
        """Store an object that no watch ever hears of: what an operator misses while kopf's
        peering pauses its watching and listing. Reads (get, list) find it."""
        metadata = obj.get("metadata", {})
        self._unwatched.add((group, plural, metadata.get("namespace", ""), metadata["name"]))
        return await self.put_object(group, plural, obj)

    async def write_status(
        self, group: str, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        stored = self._require((group, plural, namespace, name))
        return await self._replace((group, plural, namespace, name), {**stored, "status": status})

    async def remove_object(self, group: str, plural: str, namespace: str, name: str) -> None:
        await self._delete((group, plural, namespace, name))

    # ---- HTTP ------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # kmock logs every request and slows down as the log grows (../shared/TESTING.md);
        # assertions here read the store, so only a short tail is kept for debugging.
        if len(self._requests) > REQUEST_LOG_LIMIT:
            del self._requests[:-REQUEST_LOG_LIMIT]
        resource = request.resource
        if resource is None or resource.plural is None:
            return await super()._handle(request)  # discovery and everything not an object
        watch = request.params.get("watch") in ("true", "1")
        subresource = f"/{request.subresource}" if request.subresource else ""
        method = "WATCH" if watch else request.method.value
        where = resource.plural + subresource
        self.asked[Asked(method, resource.group or "", where, request.name is not None)] += 1
        try:
            return await self._serve_object_request(request)
        except ApiError as error:
            return aiohttp.web.json_response(
                {
                    "apiVersion": "v1",
                    "kind": "Status",
                    "status": "Failure",
                    "code": error.code,
                    "reason": error.reason,
                    "message": error.message,
                },
                status=error.code,
            )

    async def _serve_object_request(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        assert request.resource is not None
        group, plural = request.resource.group or "", request.resource.plural or ""
        namespace, name = request.namespace or "", request.name
        method = request.method.value
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            return await self._serve_watch(request, group, plural)
        if method == "GET" and name is None:
            return aiohttp.web.json_response(self._list_response(request, group, plural))
        if method == "POST" and name is None:
            created = await self._create(group, plural, namespace, request.data)
            return aiohttp.web.json_response(created, status=201)
        if name is None:
            raise ApiError(405, "MethodNotAllowed", f"{method} needs an object name")
        key = (group, plural, namespace, name)
        if method == "GET":  # serialised at once: no copy needed
            return aiohttp.web.json_response(self._require(key))
        if method == "DELETE":
            return aiohttp.web.json_response(await self._delete(key))
        if method in ("PATCH", "PUT"):
            status_only = request.subresource == "status"
            updated = await self._update(key, request, status_only=status_only)
            return aiohttp.web.json_response(updated)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _list_response(self, request: kmock.Request, group: str, plural: str) -> dict[str, Any]:
        selector = request.params.get("labelSelector")
        stored = (self._store[key] for key in self._stored_keys(group, plural, request.namespace))
        # Not copied: the caller serialises the answer at once.
        items = [
            obj for obj in stored if matches_selector(obj["metadata"].get("labels", {}), selector)
        ]
        metadata = {"resourceVersion": self._last_version()}
        return {"kind": "List", "metadata": metadata, "items": items}

    async def _serve_watch(
        self, request: kmock.Request, group: str, plural: str
    ) -> aiohttp.web.StreamResponse:
        watch = _Watch(group, plural, request.namespace, request.params.get("labelSelector"))
        raw_request = request._raw_request  # kmock keeps the aiohttp request here
        assert raw_request is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw_request)
        self._watches.append(watch)
        self.served_watches.add(plural)
        try:
            # Serialised before the first write: the store may change while it is sent.
            listed = [
                _event_line("ADDED", json.dumps(self._store[key]))
                for key in self._stored_keys(group, plural, request.namespace)
                if self._watch_sees(watch, self._store[key])
            ]
            for line in listed:
                await response.write(line)
            while True:
                await response.write(await watch.queue.get())
        finally:
            self._watches.remove(watch)

    # ---- writes ----------------------------------------------------------------------

    def _last_version(self) -> str:
        versions = [int(obj["metadata"]["resourceVersion"]) for obj in self._store.values()]
        return str(max(versions, default=0))

    def _has_status_subresource(self, group: str, plural: str) -> bool:
        for resource in self.resources:
            if (resource.group, resource.plural) == (group, plural):
                return "status" in self.resources[resource].subresources
        return False

    def _require(self, key: Key) -> dict[str, Any]:
        stored = self._store.get(key)
        if stored is None:
            raise ApiError(404, "NotFound", f'{key[1]} "{key[3]}" not found')
        return stored

    def _watch_sees(self, watch: _Watch, obj: dict[str, Any]) -> bool:
        metadata = obj["metadata"]
        return watch.namespace in (None, metadata.get("namespace", "")) and matches_selector(
            metadata.get("labels", {}), watch.selector
        )

    async def _publish(self, event_type: str, group: str, plural: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata", {})
        key = (group, plural, metadata.get("namespace", ""), metadata.get("name", ""))
        # Serialised once, now: every watch gets the object as it is at this write.
        serialised = json.dumps(obj)
        line = _event_line(event_type, serialised)
        for watch in [] if key in self._unwatched else self._watches:
            if (watch.group, watch.plural) == (group, plural) and self._watch_sees(watch, obj):
                watch.queue.put_nowait(line)
        for listener in list(self.write_listeners):  # the stored object: they only read it
            await listener(event_type, plural, obj)

    async def _create(
        self,
        group: str,
        plural: str,
        namespace: str,
        body: Any,
        *,
        keep_status: bool = False,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(body)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        if not metadata.get("name"):
            raise ApiError(422, "Invalid", "metadata.name is required")
        if namespace:
            metadata["namespace"] = namespace
        key = (group, plural, namespace, metadata["name"])
        if key in self._store:
            raise ApiError(409, "AlreadyExists", f'{plural} "{metadata["name"]}" already exists')
        if not keep_status and self._has_status_subresource(group, plural):
            obj.pop("status", None)  # a real server ignores status on create
        obj = await self._admit("CREATE", group, plural, obj, None)
        if key in self._store:  # created while the webhooks were asked
            raise ApiError(409, "AlreadyExists", f'{plural} "{metadata["name"]}" already exists')
        metadata = obj.setdefault("metadata", {})
        metadata.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._versions)),
            generation=1,
            creationTimestamp=now(),
        )
        self._store[key] = obj
        await self._publish("ADDED", group, plural, obj)
        return obj

    async def _update(
        self, key: Key, request: kmock.Request, *, status_only: bool
    ) -> dict[str, Any]:
        # As the API server's GuaranteedUpdate: if the object changed while the webhooks were
        # asked, the patch is applied again to the new object (and admitted again).
        while True:
            stored = self._require(key)
            candidate = self._patched(stored, request, key, status_only=status_only)
            if not status_only:
                candidate = await self._admit("UPDATE", key[0], key[1], candidate, stored)
            if self._store.get(key) is stored:
                return await self._replace(key, candidate)

    def _patched(
        self, stored: dict[str, Any], request: kmock.Request, key: Key, *, status_only: bool
    ) -> dict[str, Any]:
        content_type = request.headers.get("Content-Type", "")
        if request.method.value == "PUT":
            sent_version = (request.data or {}).get("metadata", {}).get("resourceVersion")
            if sent_version and sent_version != stored["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "the object has been modified; reload and retry")
            candidate: dict[str, Any] = copy.deepcopy(request.data)
        elif "json-patch" in content_type:
            candidate = json_patch(stored, request.data)
        else:  # merge patch; strategic merge patch is treated as one (lists are replaced)
            sent_version = (request.data or {}).get("metadata", {}).get("resourceVersion")
            if sent_version and sent_version != stored["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "the object has been modified; reload and retry")
            candidate = merge_patch(stored, request.data)
        group, plural = key[0], key[1]
        if self._has_status_subresource(group, plural):
            if status_only:  # only status changes through /status
                candidate = {**stored, "status": candidate.get("status")}
            else:  # and status never changes through the main resource
                candidate = {**candidate, "status": stored.get("status")}
            if candidate.get("status") is None:
                candidate.pop("status", None)
        return candidate

    async def _admit(
        self,
        operation: str,
        group: str,
        plural: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """Call the mutating webhooks of this resource in turn and apply their JSON Patches."""
        for webhook in self.mutating_webhooks:
            if (webhook.group, webhook.plural) != (group, plural):
                continue
            if operation not in webhook.operations:
                continue
            obj = await self._call_webhook(webhook, operation, obj, old)
        return obj

    async def _call_webhook(
        self,
        webhook: MutatingWebhook,
        operation: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> dict[str, Any]:
        metadata = obj.get("metadata", {})
        resource = {"group": group_of(obj), "version": version_of(obj), "resource": webhook.plural}
        kind = {"group": group_of(obj), "version": version_of(obj), "kind": obj.get("kind")}
        review = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": kind,
                "resource": resource,
                "requestKind": kind,
                "requestResource": resource,
                "name": metadata.get("name"),
                "namespace": metadata.get("namespace"),
                "operation": operation,
                "userInfo": {"username": webhook.username, "groups": ["system:masters"]},
                "object": obj,
                "oldObject": old,
                "dryRun": False,
            },
        }
        timeout = aiohttp.ClientTimeout(total=webhook.timeout_seconds)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(webhook.url(), json=review) as response,
            ):
                answer = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            if webhook.failure_policy == "Ignore":
                return obj
            raise ApiError(
                500,
                "InternalError",
                f'Internal error occurred: failed calling webhook "{webhook.name}": {error}',
            ) from error
        result = answer.get("response") or {}
        if not result.get("allowed"):
            status = result.get("status") or {}
            raise ApiError(
                int(status.get("code") or 400),
                str(status.get("reason") or "Forbidden"),
                f'admission webhook "{webhook.name}" denied the request: {status.get("message")}',
            )
        if not result.get("patch"):
            return obj
        return json_patch(obj, json.loads(base64.b64decode(result["patch"])))

    async def _replace(self, key: Key, candidate: dict[str, Any]) -> dict[str, Any]:
        stored = self._require(key)
        # A new dict: the candidate may share its metadata with the stored object, and stored
        # objects are never changed in place (watches, listeners and controllers read them).
        metadata = candidate["metadata"] = dict(candidate.get("metadata") or {})
        for immutable in ("name", "namespace", "uid", "creationTimestamp", "generation"):
            if immutable in stored["metadata"]:
                metadata[immutable] = stored["metadata"][immutable]
        unchanged = {k: v for k, v in candidate.items() if k != "metadata"} == {
            k: v for k, v in stored.items() if k != "metadata"
        } and {k: v for k, v in metadata.items() if k != "resourceVersion"} == {
            k: v for k, v in stored["metadata"].items() if k != "resourceVersion"
        }
        if unchanged:
            return stored  # a no-op write does not bump resourceVersion
        if candidate.get("spec") != stored.get("spec"):
            metadata["generation"] = stored["metadata"].get("generation", 1) + 1
        metadata["resourceVersion"] = str(next(self._versions))
        self._store[key] = candidate
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            return await self._remove(key)
        await self._publish("MODIFIED", key[0], key[1], candidate)
        return candidate

    async def _delete(self, key: Key) -> dict[str, Any]:
        stored = self._require(key)
        if stored["metadata"].get("finalizers"):
            if not stored["metadata"].get("deletionTimestamp"):
                marked = copy.deepcopy(stored)
                marked["metadata"]["deletionTimestamp"] = now()
                return await self._replace(key, marked)
            return stored
        return await self._remove(key)

    async def _remove(self, key: Key) -> dict[str, Any]:
        removed = self._store.pop(key)
        await self._publish("DELETED", key[0], key[1], removed)
        await self._collect_dependents(removed["metadata"]["uid"])
        return removed

    async def _collect_dependents(self, owner_uid: str) -> None:
        """Garbage collection: objects owned by a deleted object go too."""
        for key, obj in list(self._store.items()):
            owners = obj["metadata"].get("ownerReferences", [])
            if key in self._store and any(owner.get("uid") == owner_uid for owner in owners):
                await self._delete(key)


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON object; a JSON round trip is twice as fast as copy.deepcopy."""
    copied: dict[str, Any] = json.loads(json.dumps(obj))
    return copied


def _event_line(event_type: str, serialised_object: str) -> bytes:
    """One watch event as the API server streams it, a JSON document per line."""
    return f'{{"type": "{event_type}", "object": {serialised_object}}}\n'.encode()


def group_of(obj: dict[str, Any]) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def version_of(obj: dict[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).rsplit("/", 1)[-1]


def secret_value(secret: dict[str, Any], key: str) -> str | None:
    """A Secret's value as a pod would see it: `data` is base64, `stringData` is plain."""
    if key in secret.get("stringData", {}):
        return str(secret["stringData"][key])
    if key in secret.get("data", {}):
        return base64.b64decode(secret["data"][key]).decode()
    return None
