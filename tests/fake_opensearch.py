"""A stand-in for an OpenSearch cluster and OpenSearch Dashboards, for the installer's tests.

No OpenSearch node can run on this machine (there is no Debian package, and no image registry to
pull one from), so this server speaks the documented REST API of the calls the installer makes,
no more: cluster settings, ML Commons' connectors, model groups, models and tasks, ingest
pipelines, composable templates, and Dashboards' saved objects. It keeps state, records every call
(method, path, query, body), and answers as the real endpoints do where the installer depends on
it, as read from their source (ML Commons' REST actions and transport actions, 2.x and 3.x):

- answers in the real shapes (``{"connector_id"}``; ``{"task_id", "status": "CREATED",
  "model_id"}``; tasks with ``state``; search hits with ``_id`` and ``_source``; templates under
  ``component_templates``/``index_templates``; a missing pipeline as 404 ``{}``), errors as
  ``{"error": {"root_cause": [...], "type", "reason"}, "status"}``;
- settings read back as text (``"true"``), lists as lists; the defaults only for what is not set;
- a connector whose action URL no trusted regex fully matches is refused with ML Commons' 400;
  its credential is stored encrypted and never returned; its action type is stored upper-case and
  its client_config with ML Commons' defaults filled in;
- a connector used by a deployed model cannot be updated, nor a deployed model deleted, nor a
  connector a model uses, nor a model group that has models, nor a component template an index
  template is composed of, as in the source, with the same messages;
- ``register?deploy=true`` answers at once with a completed register task and deploys in the
  background (the model is DEPLOYING for ``pending_polls`` reads); an explicit deploy is a task;
- ``regex_safety`` adds what ML Commons 3.7 checks when the trusted list is set (no nested
  quantifiers, no backreferences, at most 256 characters);
- ``credentials`` makes every call without them a 401 (the security plugin's plain
  ``Unauthorized``), ``forbid`` one call a 403 ``security_exception``; Dashboards wants ``osd-xsrf``;
- ``answer_with`` makes one call answer what a server that is not this API answers (a proxy's
  login page, JSON of another shape), without doing anything.

It runs in a thread with its own event loop on a free loopback port; one server answers both the
cluster's and Dashboards' paths (they do not overlap).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from dotted import nested

TRUSTED = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP = "plugins.ml_commons.connector.private_ip_enabled"
# ML Commons' defaults (MLCommonsSettings), as GET _cluster/settings?include_defaults=true gives them
DEFAULTS: dict[str, Any] = {
    TRUSTED: [
        "^https://runtime\\.sagemaker\\..*[a-z0-9-]\\.amazonaws\\.com/.*$",
        "^https://api\\.openai\\.com/.*$",
        "^https://api\\.cohere\\.ai/.*$",
        "^https://bedrock-runtime\\..*[a-z0-9-]\\.amazonaws\\.com/.*$",
    ],
    PRIVATE_IP: "false",
}
CLIENT_CONFIG_DEFAULTS: dict[str, Any] = {
    "max_connection": 30,
    "connection_timeout": 30,
    "read_timeout": 30,
    "retry_backoff_millis": 200,
    "retry_timeout_seconds": 30,
    "max_retry_times": 0,
    "retry_backoff_policy": "constant",
    "skip_ssl_verification": False,
}
DEPLOYED = ("DEPLOYED", "DEPLOYING", "PARTIALLY_DEPLOYED")
ML = "/_plugins/_ml"

Handler = Callable[[web.Request, "re.Match[str]", Any], Awaitable[web.StreamResponse]]


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any  # the JSON, or the bytes of a multipart file

    @property
    def writes(self) -> bool:
        """Whether the call changes state (searches and bulk reads are POSTs that do not)."""
        return self.method != "GET" and not self.path.endswith(("/_search", "/_bulk_get"))

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class HttpError(Exception):
    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


@dataclass
class FakeOpenSearch:
    credentials: tuple[str, str] | None = None
    regex_safety: bool = False
    pending_polls: int = 0  # reads of a task (or a deploying model) before it completes
    deploy_failure: str | None = None  # every deployment fails with this error
    # settings this cluster lacks: PRIVATE_IP before ML Commons 2.15, both without ML Commons
    unknown_settings: tuple[str, ...] = ()
    calls: list[Call] = field(default_factory=list)
    persistent: dict[str, Any] = field(default_factory=dict)
    transient: dict[str, Any] = field(default_factory=dict)
    connectors: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    component_templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    index_templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    saved_objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(
        default_factory=dict
    )  # connector id → its credential, decrypted
    forbidden: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, path) → the action named
    odd: dict[tuple[str, str], tuple[int, str, str, dict[str, str]]] = field(default_factory=dict)
    _deploying: dict[str, int] = field(default_factory=dict)  # model id → reads left before DEPLOYED
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---- running ---------------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenSearch:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake OpenSearch did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = self._runner.addresses[0][1]
        ready.set()
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- what tests look at ---------------------------------------------------------------------

    def forbid(self, method: str, path: str, action: str) -> None:
        """Answer ``method path`` with 403, as the security plugin does for a user without ``action``."""
        self.forbidden[(method, path)] = action

    def answer_with(
        self,
        method: str,
        path: str,
        body: str,
        content_type: str = "application/json",
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``method path`` with ``body`` (and nothing done), as a server that is not OpenSearch would."""
        self.odd[(method, path)] = (status, content_type, body, headers or {})

    def writes(self) -> list[Call]:
        return [call for call in self.calls if call.writes]

    def state(self) -> dict[str, Any]:
        """Everything an install can change (ML tasks aside: the cluster keeps their history)."""
        return copy.deepcopy(
            {
                "persistent": self.persistent,
                "transient": self.transient,
                "connectors": self.connectors,
                "model_groups": self.model_groups,
                "models": self.models,
                "pipelines": self.pipelines,
                "component_templates": self.component_templates,
                "index_templates": self.index_templates,
                "saved_objects": self.saved_objects,
            }
        )

    def trusted(self) -> list[str]:
        """The trusted-endpoint list in effect: transient over persistent over the default."""
        value = self.transient.get(TRUSTED, self.persistent.get(TRUSTED, DEFAULTS[TRUSTED]))
        return list(value)

    # ---- dispatch -------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        body: Any = None
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if getattr(part, "name", None) == "file":
                    body = bytes(await part.read())  # type: ignore[union-attr]
        elif request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw.strip() else None
        self.calls.append(Call(request.method, request.path, dict(request.query), body))
        if self.credentials is not None and request.headers.get("Authorization") != _basic(*self.credentials):
            return web.Response(
                status=401, text="Unauthorized", headers={"WWW-Authenticate": 'Basic realm="OpenSearch"'}
            )
        action = self.forbidden.get((request.method, request.path))
        if action is not None:
            reason = (
                f"no permissions for [{action}] and User [name={(self.credentials or ('anonymous',))[0]}]"
            )
            return _error(403, "security_exception", reason)
        if (request.method, request.path) in self.odd:
            status, content_type, text, headers = self.odd[(request.method, request.path)]
            return web.Response(status=status, text=text, content_type=content_type, headers=headers)
        is_dashboards = request.path.startswith("/api/")
        if is_dashboards and request.method != "GET" and request.headers.get("osd-xsrf") is None:
            message = "Request must contain a osd-xsrf header."
            return web.json_response(
                {"statusCode": 400, "error": "Bad Request", "message": message}, status=400
            )
        for method, pattern, handler in self._routes():
            match = re.fullmatch(pattern, request.path)
            if match and method == request.method:
                try:
                    return await handler(request, match, body)
                except HttpError as exc:
                    if is_dashboards:
                        payload = {"statusCode": exc.status, "error": exc.kind, "message": exc.reason}
                        return web.json_response(payload, status=exc.status)
                    return _error(exc.status, exc.kind, exc.reason)
        return _error(
            400,
            "illegal_argument_exception",
            f"no handler found for uri [{request.path}] and method [{request.method}]",
        )

    def _routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/_cluster/settings", self._get_settings),
            ("PUT", "/_cluster/settings", self._put_settings),
            ("POST", f"{ML}/connectors/_create", self._create_connector),
            ("POST", f"{ML}/connectors/_search", self._searcher(self.connectors, ".plugins-ml-connector")),
            ("PUT", f"{ML}/connectors/([^/_][^/]*)", self._update_connector),
            ("DELETE", f"{ML}/connectors/([^/_][^/]*)", self._delete_connector),
            ("POST", f"{ML}/model_groups/_register", self._register_group),
            (
                "POST",
                f"{ML}/model_groups/_search",
                self._searcher(self.model_groups, ".plugins-ml-model-group"),
            ),
            ("PUT", f"{ML}/model_groups/([^/_][^/]*)", self._update_group),
            ("DELETE", f"{ML}/model_groups/([^/_][^/]*)", self._delete_group),
            ("POST", f"{ML}/models/_register", self._register_model),
            ("POST", f"{ML}/models/_search", self._searcher(self.models, ".plugins-ml-model")),
            ("GET", f"{ML}/models/([^/_][^/]*)", self._get_model),
            ("PUT", f"{ML}/models/([^/_][^/]*)", self._update_model),
            ("DELETE", f"{ML}/models/([^/_][^/]*)", self._delete_model),
            ("POST", f"{ML}/models/([^/_][^/]*)/_deploy", self._deploy),
            ("POST", f"{ML}/models/([^/_][^/]*)/_undeploy", self._undeploy),
            ("GET", f"{ML}/tasks/([^/]+)", self._get_task),
            ("GET", "/_ingest/pipeline/([^/]+)", self._get_pipeline),
            ("PUT", "/_ingest/pipeline/([^/]+)", self._put_pipeline),
            ("DELETE", "/_ingest/pipeline/([^/]+)", self._delete_pipeline),
            ("GET", "/_component_template/([^/]+)", self._get_component),
            ("PUT", "/_component_template/([^/]+)", self._put_component),
            ("DELETE", "/_component_template/([^/]+)", self._delete_component),
            ("GET", "/_index_template/([^/]+)", self._get_index_template),
            ("PUT", "/_index_template/([^/]+)", self._put_index_template),
            ("DELETE", "/_index_template/([^/]+)", self._delete_index_template),
            ("POST", "/api/saved_objects/_import", self._import),
            ("POST", "/api/saved_objects/_bulk_get", self._bulk_get),
            ("DELETE", "/api/saved_objects/([^/]+)/([^/]+)", self._delete_saved_object),
        ]

    def _new_id(self) -> str:
        """An id of the length OpenSearch gives (20 characters of URL-safe base64)."""
        return base64.urlsafe_b64encode(f"fake-id-{next(self._ids):07d}".encode()).decode()[:20]

    # ---- cluster settings -------------------------------------------------------------------------

    async def _get_settings(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        shape = (lambda s: s) if request.query.get("flat_settings") == "true" else nested
        answer = {"persistent": shape(self.persistent), "transient": shape(self.transient)}
        if request.query.get("include_defaults") == "true":
            unset = {
                k: v
                for k, v in DEFAULTS.items()
                if k not in self.persistent and k not in self.transient and k not in self.unknown_settings
            }
            answer["defaults"] = shape(unset)
        return web.json_response(answer)

    async def _put_settings(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        changes: dict[str, dict[str, Any]] = {}
        for scope in ("persistent", "transient"):
            for name, value in _flat(body.get(scope) or {}).items():
                if name not in DEFAULTS or name in self.unknown_settings:
                    raise HttpError(
                        400, "illegal_argument_exception", f"{scope} setting [{name}], not recognized"
                    )
                if name == TRUSTED and value is not None:
                    for regex in value:
                        self._check_regex(regex)
                changes.setdefault(scope, {})[name] = value
        for scope, settings in changes.items():
            target = self.persistent if scope == "persistent" else self.transient
            for name, value in settings.items():
                if value is None:
                    target.pop(name, None)
                elif isinstance(value, list):
                    target[name] = [str(item) for item in value]
                else:
                    target[name] = str(value).lower() if isinstance(value, bool) else str(value)
        answer = {scope: nested(changes.get(scope, {})) for scope in ("persistent", "transient")}
        return web.json_response({"acknowledged": True, **answer})

    def _check_regex(self, regex: str) -> None:
        """ML Commons 3.7's validateRegexSafety."""
        if not self.regex_safety:
            return
        if re.fullmatch(r".*\([^)]*[*+?]\)[*+?{].*", regex) or re.fullmatch(r".*\\[1-9].*", regex):
            reason = (
                f"Regex pattern contains nested quantifiers or backreferences that may cause ReDoS: {regex}"
            )
            raise HttpError(400, "illegal_argument_exception", reason)
        if len(regex) > 256:
            raise HttpError(
                400, "illegal_argument_exception", f"Regex pattern too long (max 256 chars): {regex}"
            )

    # ---- connectors ----------------------------------------------------------------------------------

    def _validated_connector(self, body: dict[str, Any]) -> dict[str, Any]:
        """A connector as ML Commons stores it (credential encrypted, defaults filled), or a refusal."""
        if body.get("protocol") not in ("http", "aws_sigv4"):
            raise HttpError(
                400, "illegal_argument_exception", f"Unsupported connector protocol: {body.get('protocol')}"
            )
        if not body.get("credential"):
            raise HttpError(400, "illegal_argument_exception", "Connector credential is null or empty list")
        actions = body.get("actions") or []
        if not actions:
            raise HttpError(400, "illegal_argument_exception", "No actions configured for this connector")
        parameters = body.get("parameters") or {}
        for action in actions:
            url = re.sub(
                r"\$\{parameters\.([^}]+)\}",
                lambda m: str(parameters.get(m.group(1), m.group(0))),
                action["url"],
            )
            if not any(re.fullmatch(regex, url) for regex in self.trusted()):
                raise HttpError(
                    400,
                    "illegal_argument_exception",
                    "Connector URL is not matching the trusted connector endpoint regex",
                )
        now = _millis()
        stored = {key: copy.deepcopy(value) for key, value in body.items() if key != "credential"}
        stored["actions"] = [{**action, "action_type": action["action_type"].upper()} for action in actions]
        stored["client_config"] = {**CLIENT_CONFIG_DEFAULTS, **(body.get("client_config") or {})}
        stored["credential"] = {key: _encrypt(value) for key, value in body["credential"].items()}
        stored["created_time"] = stored["last_updated_time"] = now
        return stored

    async def _create_connector(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        stored = self._validated_connector(body)
        connector_id = self._new_id()
        self.connectors[connector_id] = stored
        self.secrets[connector_id] = dict(body["credential"])
        return web.json_response({"connector_id": connector_id})

    async def _update_connector(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        connector_id = match.group(1)
        if connector_id not in self.connectors:
            raise HttpError(404, "status_exception", "Failed to find connector to update")
        using = [
            mid
            for mid, m in self.models.items()
            if m.get("connector_id") == connector_id and m["model_state"] in DEPLOYED
        ]
        if using:
            reason = f"{len(using)} models are still using this connector, please undeploy the models first: {using}"
            raise HttpError(400, "status_exception", reason)
        old = self.connectors[connector_id]
        merged = {**{k: v for k, v in old.items() if k not in ("credential", "created_time")}, **body}
        merged["credential"] = body.get("credential") or self.secrets[connector_id]
        merged["actions"] = [{**a, "action_type": a["action_type"].lower()} for a in merged["actions"]]
        stored = self._validated_connector(merged)
        stored["created_time"] = old["created_time"]
        self.connectors[connector_id] = stored
        self.secrets[connector_id] = dict(merged["credential"])
        return _write_answer(".plugins-ml-connector", connector_id, "updated")

    async def _delete_connector(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        connector_id = match.group(1)
        using = [mid for mid, m in self.models.items() if m.get("connector_id") == connector_id]
        if using:
            reason = f"{len(using)} models are still using this connector, please delete or update the models first: {using}"
            raise HttpError(409, "status_exception", reason)
        if self.connectors.pop(connector_id, None) is None:
            raise HttpError(404, "status_exception", "Failed to find connector")
        self.secrets.pop(connector_id, None)
        return _write_answer(".plugins-ml-connector", connector_id, "deleted")

    # ---- model groups ---------------------------------------------------------------------------------

    async def _register_group(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        for group_id, group in self.model_groups.items():
            if group["name"] == body["name"]:
                reason = f"The name you provided is already being used by a model group with ID: {group_id}."
                raise HttpError(400, "illegal_argument_exception", reason)
        group_id = self._new_id()
        now = _millis()
        self.model_groups[group_id] = {
            **body,
            "latest_version": 0,
            "created_time": now,
            "last_updated_time": now,
        }
        return web.json_response({"model_group_id": group_id, "status": "CREATED"})

    async def _update_group(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        group = self.model_groups.get(match.group(1))
        if group is None:
            raise HttpError(404, "status_exception", "Failed to find model group")
        group.update(body, last_updated_time=_millis())
        return web.json_response({"status": "Updated"})

    async def _delete_group(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        group_id = match.group(1)
        if any(m["model_group_id"] == group_id for m in self.models.values()):
            raise HttpError(
                409, "status_exception", "Cannot delete the model group when it has associated model versions"
            )
        if self.model_groups.pop(group_id, None) is None:
            raise HttpError(404, "status_exception", "Failed to find model group")
        return _write_answer(".plugins-ml-model-group", group_id, "deleted")

    # ---- models and tasks -----------------------------------------------------------------------------

    async def _register_model(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        if str(body.get("function_name", "")).lower() != "remote":
            raise HttpError(400, "illegal_argument_exception", "only remote models in this fake")
        if body.get("connector_id") not in self.connectors:
            raise HttpError(404, "status_exception", "Failed to find connector")
        group = self.model_groups.get(body.get("model_group_id", ""))
        if group is None:
            raise HttpError(404, "status_exception", "Failed to find model group")
        group["latest_version"] += 1
        model_id = self._new_id()
        now = _millis()
        self.models[model_id] = {
            "name": body["name"],
            "model_group_id": body["model_group_id"],
            "algorithm": "REMOTE",
            "model_version": str(group["latest_version"]),
            "description": body.get("description"),
            "model_state": "REGISTERED",
            "created_time": now,
            "last_updated_time": now,
            "connector_id": body["connector_id"],
        }
        task_id = self._task("REGISTER_MODEL", model_id, polls=0)
        if request.query.get("deploy") == "true":  # a deploy task of its own, whose id nobody is told
            self.models[model_id]["model_state"] = "DEPLOYING"
            self._deploying[model_id] = self.pending_polls
            self._advance_deploying(model_id)
        return web.json_response({"task_id": task_id, "status": "CREATED", "model_id": model_id})

    def _advance_deploying(self, model_id: str) -> None:
        left = self._deploying.get(model_id)
        if left is None:
            return
        if left > 0:
            self._deploying[model_id] = left - 1
            return
        del self._deploying[model_id]
        self.models[model_id]["model_state"] = "DEPLOY_FAILED" if self.deploy_failure else "DEPLOYED"

    def _model(self, model_id: str) -> dict[str, Any]:
        model = self.models.get(model_id)
        if model is None:
            raise HttpError(404, "status_exception", "Failed to find model")
        return model

    async def _get_model(self, request: web.Request, match: re.Match[str], body: Any) -> web.StreamResponse:
        model = self._model(match.group(1))
        answer = dict(model)
        self._advance_deploying(match.group(1))  # read before the state moves: the next read sees it
        return web.json_response(answer)

    async def _update_model(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        model = self._model(match.group(1))
        if model["model_state"] == "DEPLOYING":
            reason = f"Model is deploying. Please wait for the model to complete deployment. model ID {match.group(1)}"
            raise HttpError(409, "status_exception", reason)
        if "connector_id" in body and body["connector_id"] not in self.connectors:
            raise HttpError(404, "status_exception", "Failed to find connector")
        model.update(body, last_updated_time=_millis())
        return _write_answer(".plugins-ml-model", match.group(1), "updated")

    async def _delete_model(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        model = self._model(match.group(1))
        if model["model_state"] in DEPLOYED:
            reason = (
                "Model cannot be deleted in deploying or deployed state. Try undeploy model first then delete"
            )
            raise HttpError(400, "status_exception", reason)
        del self.models[match.group(1)]
        return _write_answer(".plugins-ml-model", match.group(1), "deleted")

    async def _deploy(self, request: web.Request, match: re.Match[str], body: Any) -> web.StreamResponse:
        model = self._model(match.group(1))
        model["model_state"] = "DEPLOYING"
        task_id = self._task("DEPLOY_MODEL", match.group(1), polls=self.pending_polls)
        return web.json_response({"task_id": task_id, "task_type": "DEPLOY_MODEL", "status": "CREATED"})

    async def _undeploy(self, request: web.Request, match: re.Match[str], body: Any) -> web.StreamResponse:
        model = self._model(match.group(1))
        if model["model_state"] not in DEPLOYED:
            return web.json_response({})
        model["model_state"] = "UNDEPLOYED"
        return web.json_response({"node-1": {"stats": {match.group(1): "undeployed"}}})

    def _task(self, task_type: str, model_id: str, polls: int) -> str:
        task_id = self._new_id()
        self.tasks[task_id] = {
            "model_id": model_id,
            "task_type": task_type,
            "function_name": "REMOTE",
            "state": "CREATED",
            "worker_node": ["node-1"],
            "create_time": _millis(),
            "last_update_time": _millis(),
            "is_async": True,
            "_polls_left": polls,
        }
        self._advance_task(task_id)
        return task_id

    def _advance_task(self, task_id: str) -> None:
        task = self.tasks[task_id]
        if task["state"] in ("COMPLETED", "FAILED"):
            return
        if task["_polls_left"] > 0:
            task["_polls_left"] -= 1
            task["state"] = "RUNNING"
            return
        model = self.models[task["model_id"]]
        if task["task_type"] == "DEPLOY_MODEL" and self.deploy_failure:
            task.update(state="FAILED", error=self.deploy_failure)
            model["model_state"] = "DEPLOY_FAILED"
        else:
            task["state"] = "COMPLETED"
            if task["task_type"] == "DEPLOY_MODEL":
                model["model_state"] = "DEPLOYED"

    async def _get_task(self, request: web.Request, match: re.Match[str], body: Any) -> web.StreamResponse:
        task_id = match.group(1)
        if task_id not in self.tasks:
            raise HttpError(404, "status_exception", "Failed to find task")
        answer = {key: value for key, value in self.tasks[task_id].items() if not key.startswith("_")}
        self._advance_task(task_id)
        return web.json_response(answer)

    # ---- searches -----------------------------------------------------------------------------------

    def _searcher(self, documents: dict[str, dict[str, Any]], index: str) -> Handler:
        """ML Commons' _search over one of its indices: term, terms and bool filters; credentials left out."""

        async def search(request: web.Request, match: re.Match[str], body: Any) -> web.StreamResponse:
            query = (body or {}).get("query", {"match_all": {}})
            hits = [
                {
                    "_index": index,
                    "_id": doc_id,
                    "_version": 1,
                    "_seq_no": n,
                    "_primary_term": 1,
                    "_score": 0.0,
                    "_source": {k: v for k, v in copy.deepcopy(doc).items() if k != "credential"},
                }
                for n, (doc_id, doc) in enumerate(documents.items())
                if _matches(doc, query)
            ][: (body or {}).get("size", 10)]
            return web.json_response(
                {
                    "took": 1,
                    "timed_out": False,
                    "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                    "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": 0.0, "hits": hits},
                }
            )

        return search

    # ---- ingest pipelines and templates --------------------------------------------------------------

    async def _get_pipeline(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        name = match.group(1)
        if name not in self.pipelines:
            return web.json_response({}, status=404)
        return web.json_response({name: self.pipelines[name]})

    async def _put_pipeline(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        if not isinstance(body.get("processors"), list):
            raise HttpError(400, "parse_exception", "[processors] required property is missing")
        self.pipelines[match.group(1)] = body
        return web.json_response({"acknowledged": True})

    async def _delete_pipeline(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        if self.pipelines.pop(match.group(1), None) is None:
            raise HttpError(404, "resource_not_found_exception", f"pipeline [{match.group(1)}] is missing")
        return web.json_response({"acknowledged": True})

    async def _get_component(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        name = match.group(1)
        if name not in self.component_templates:
            raise HttpError(
                404, "resource_not_found_exception", f"component template matching [{name}] not found"
            )
        template = copy.deepcopy(self.component_templates[name])
        if request.query.get("flat_settings") != "true" and "settings" in template.get("template", {}):
            template["template"]["settings"] = nested(template["template"]["settings"])
        return web.json_response({"component_templates": [{"name": name, "component_template": template}]})

    async def _put_component(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        template = copy.deepcopy(body)
        if "settings" in template.get("template", {}):
            template["template"]["settings"] = _flat(template["template"]["settings"])
        self.component_templates[match.group(1)] = template
        return web.json_response({"acknowledged": True})

    async def _delete_component(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        name = match.group(1)
        users = [t for t, template in self.index_templates.items() if name in template.get("composed_of", [])]
        if users:
            reason = f"component templates [{name}] cannot be removed as they are still in use by index templates [{', '.join(users)}]"
            raise HttpError(400, "illegal_argument_exception", reason)
        if self.component_templates.pop(name, None) is None:
            raise HttpError(404, "resource_not_found_exception", name)
        return web.json_response({"acknowledged": True})

    async def _get_index_template(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        name = match.group(1)
        if name not in self.index_templates:
            raise HttpError(
                404, "resource_not_found_exception", f"index template matching [{name}] not found"
            )
        return web.json_response(
            {"index_templates": [{"name": name, "index_template": self.index_templates[name]}]}
        )

    async def _put_index_template(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        name = match.group(1)
        refused = [  # MetadataIndexTemplateService.validate, in part
            f"index_pattern [{pattern}] must not contain a {what}"
            for pattern in body.get("index_patterns", [])
            for what in ("space", "','", "'#'", "':'")
            if {"space": " "}.get(what, what.strip("'")) in pattern
        ]
        if refused:
            errors = "".join(f"{n}: {error};" for n, error in enumerate(refused, 1))
            reason = f"index_template [{name}] invalid, cause [Validation Failed: {errors}]"
            raise HttpError(400, "invalid_index_template_exception", reason)
        missing = [c for c in body.get("composed_of", []) if c not in self.component_templates]
        if missing:
            cause = f"index template [{name}] specifies component templates {missing} that do not exist"
            reason = f"index_template [{name}] invalid, cause [{cause}]"
            raise HttpError(400, "invalid_index_template_exception", reason)
        self.index_templates[name] = copy.deepcopy(body)
        return web.json_response({"acknowledged": True})

    async def _delete_index_template(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        if self.index_templates.pop(match.group(1), None) is None:
            raise HttpError(
                404, "resource_not_found_exception", f"index_template matching [{match.group(1)}] not found"
            )
        return web.json_response({"acknowledged": True})

    # ---- Dashboards' saved objects --------------------------------------------------------------------

    async def _import(self, request: web.Request, match: re.Match[str], body: Any) -> web.StreamResponse:
        if not isinstance(body, bytes):
            raise HttpError(
                400, "Bad Request", "[request body.file]: expected value of type [object] but got [undefined]"
            )
        overwrite = request.query.get("overwrite") == "true"
        objects = [json.loads(line) for line in body.splitlines() if line.strip()]
        objects = [o for o in objects if "type" in o and "id" in o]
        conflicts = [o for o in objects if (o["type"], o["id"]) in self.saved_objects and not overwrite]
        if conflicts:
            errors = [{"id": o["id"], "type": o["type"], "error": {"type": "conflict"}} for o in conflicts]
            return web.json_response({"successCount": 0, "success": False, "errors": errors})
        for obj in objects:
            self.saved_objects[(obj["type"], obj["id"])] = {
                "attributes": obj.get("attributes", {}),
                "references": obj.get("references", []),
            }
        results = [
            {"type": o["type"], "id": o["id"], "meta": {"title": o.get("attributes", {}).get("title")}}
            for o in objects
        ]
        return web.json_response({"successCount": len(objects), "success": True, "successResults": results})

    async def _bulk_get(self, request: web.Request, match: re.Match[str], body: Any) -> web.StreamResponse:
        answers = []
        for wanted in body:
            key = (wanted["type"], wanted["id"])
            if key in self.saved_objects:
                answers.append(
                    {
                        **wanted,
                        **self.saved_objects[key],
                        "updated_at": "2026-01-01T00:00:00.000Z",
                        "version": "WzEsMV0=",
                    }
                )
            else:
                answers.append(
                    {
                        **wanted,
                        "error": {
                            "statusCode": 404,
                            "error": "Not Found",
                            "message": f"Saved object [{key[0]}/{key[1]}] not found",
                        },
                    }
                )
        return web.json_response({"saved_objects": answers})

    async def _delete_saved_object(
        self, request: web.Request, match: re.Match[str], body: Any
    ) -> web.StreamResponse:
        key = (match.group(1), match.group(2))
        if self.saved_objects.pop(key, None) is None:
            raise HttpError(404, "Not Found", f"Saved object [{key[0]}/{key[1]}] not found")
        return web.json_response({})


def _error(status: int, kind: str, reason: str) -> web.Response:
    cause = {"type": kind, "reason": reason}
    return web.json_response({"error": {"root_cause": [cause], **cause}, "status": status}, status=status)


def _write_answer(index: str, doc_id: str, result: str) -> web.Response:
    """An index/update/delete response, as ML Commons passes them through."""
    return web.json_response(
        {
            "_index": index,
            "_id": doc_id,
            "_version": 2,
            "result": result,
            "forced_refresh": True,
            "_shards": {"total": 1, "successful": 1, "failed": 0},
            "_seq_no": 1,
            "_primary_term": 1,
        }
    )


def _matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    ((kind, clause),) = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        return all(_matches(doc, q) for q in clause.get("filter", []) + clause.get("must", [])) and not any(
            _matches(doc, q) for q in clause.get("must_not", [])
        )
    ((name, wanted),) = clause.items()
    value = doc.get(name.removesuffix(".keyword"))
    if kind == "term":
        return bool(value == (wanted["value"] if isinstance(wanted, dict) else wanted))
    if kind == "terms":
        return value in wanted
    raise HttpError(400, "parsing_exception", f"unknown query [{kind}] in this fake")


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _encrypt(value: str) -> str:
    """Stands in for ML Commons' AES-GCM: the stored text differs from the credential."""
    return base64.b64encode(b"encrypted:" + value[::-1].encode()).decode()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _millis() -> int:
    return int(time.time() * 1000)
