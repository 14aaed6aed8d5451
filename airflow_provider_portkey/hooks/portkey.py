"""The synchronous Portkey hook, for operators and poke-mode sensors."""

from __future__ import annotations

import itertools
import time
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import requests
from airflow.providers.common.compat.sdk import mask_secret

from airflow_provider_portkey.errors import (
    PortkeyNotFoundError,
    PortkeyRequestError,
)
from airflow_provider_portkey.hooks.base import PortkeyBaseHook
from airflow_provider_portkey.models import Run, RunStep
from airflow_provider_portkey.models_response import Response
from airflow_provider_portkey.protocol import (
    ApiRequest,
    cancel_run_request,
    connection_error,
    create_run_request,
    create_thread_and_run_request,
    feedback_request,
    get_run_request,
    interpret_response,
    list_run_steps_request,
    next_page_after,
    parse_feedback,
    parse_run,
    parse_run_step,
    parse_run_step_list,
    run_body,
    run_step_request,
    submit_tool_outputs_request,
)
from airflow_provider_portkey.provider_info import UI_FIELD_BEHAVIOUR, conn_fields
from airflow_provider_portkey.responses_api import (
    cancel_response_request,
    create_response_request,
    delete_response_request,
    get_response_request,
    list_input_items_request,
    parse_deletion,
    parse_item_list,
    parse_response,
    response_body,
)
from airflow_provider_portkey.settings import PortkeySettings


def _keep_headers(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """Session auth that changes nothing: the headers already carry every credential."""
    return request


class PortkeyHook(PortkeyBaseHook):
    """
    Talk to Portkey's Assistants API (runs and run steps) from a worker.

    One ``requests.Session`` per hook keeps the connection alive between polls. Transient failures
    (connection errors, 408, 429 unless the quota is spent, 5xx) are retried with exponential backoff
    and full jitter, never sooner than a ``Retry-After`` and never past the hook's ``deadline``;
    other errors fail at once. Redirects are never followed. POSTs that create or change something
    (a run, a cancel, tool outputs) are retried only when the failure proves the server did nothing
    (never connected, 429, 503): see docs/workflows.md. :mod:`..retries` decides all of this.
    Use it as a context manager, or call :meth:`close`, to release the session.
    """

    _session: requests.Session | None = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow < 3.2 reads the form layout from here; 3.2+ reads the same dict from provider info.

        Defined on the registered hook class itself: Airflow looks in the class ``__dict__`` only.
        """
        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow < 3.2 builds the extra fields from here; 3.2+ reads ``conn-fields`` instead."""
        from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
        from wtforms import PasswordField, StringField

        widgets: dict[str, Any] = {}
        for name, spec in conn_fields().items():
            secret = spec["schema"].get("format") == "password"
            field_class, widget = (
                (PasswordField, BS3PasswordFieldWidget()) if secret else (StringField, BS3TextFieldWidget())
            )
            widgets[name] = field_class(spec["label"], widget=widget, description=spec["description"])
        return widgets

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def settings(self) -> PortkeySettings:
        """The validated connection (read once per hook)."""
        if self._settings is None:
            conn = self.get_connection(self.portkey_conn_id)
            settings = self._validated_settings(
                host=conn.host, password=conn.password, port=conn.port, extra=conn.extra_dejson
            )
            for secret in settings.secrets:
                mask_secret(secret)
            self._settings = settings
        assert self._settings is not None
        return self._settings

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            session.headers.clear()  # no defaults of requests': each request carries all its headers
            # With no session auth, requests would let a ~/.netrc entry for the host overwrite our
            # Authorization (the provider key). A no-op auth stops that; proxies from the
            # environment are still honoured.
            session.auth = _keep_headers
            self._session = session
        return self._session

    def request(self, api_request: ApiRequest) -> Any:
        """Send ``api_request`` with retries; return the decoded JSON or raise a ``PortkeyError``."""
        settings = self.settings
        for attempt in itertools.count():
            try:
                return self._send_once(settings, api_request)
            except PortkeyRequestError as error:
                time.sleep(self._wait_before_retry(settings, api_request, attempt, error))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_once(self, settings: PortkeySettings, api_request: ApiRequest) -> Any:
        try:
            response = self.session.request(
                api_request.method,
                settings.base_url + api_request.path,
                params=list(api_request.params),
                json=api_request.body,
                headers=self._headers(settings, api_request),
                timeout=(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
            )
            body = response.content
        except requests.RequestException as error:
            raise connection_error(api_request, error, settings.base_url, self.portkey_conn_id) from None
        return interpret_response(api_request, response.status_code, response.headers, body, settings.secrets)

    def _run(self, api_request: ApiRequest) -> Run:
        return parse_run(api_request, self.request(api_request), self.settings.secrets)

    def create_thread_and_run(
        self,
        assistant_id: str,
        *,
        thread: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Run:
        """
        Start a run on a new thread (``POST /threads/runs``).

        :param thread: The new thread: ``messages``, ``metadata``, ``tool_resources``.
        :param metadata: The run's metadata (at most 16 string pairs).
        :param options: Further API fields by their API names (``model``, ``instructions``,
            ``tools``, ...); ``None`` values are left out. A mapping rather than keyword arguments,
            so an API field can never collide with an argument of this method.
        """
        body = run_body(assistant_id, thread=thread, metadata=metadata, options=options)
        return self._run(create_thread_and_run_request(body))

    def create_run(
        self,
        thread_id: str,
        assistant_id: str,
        *,
        additional_messages: Sequence[Mapping[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Run:
        """Start a run on an existing thread (``POST /threads/{thread_id}/runs``); see above for options."""
        body = run_body(
            assistant_id, additional_messages=additional_messages, metadata=metadata, options=options
        )
        return self._run(create_run_request(thread_id, body))

    def get_run(self, thread_id: str, run_id: str) -> Run:
        """Retrieve a run (``GET /threads/{thread_id}/runs/{run_id}``)."""
        return self._run(get_run_request(thread_id, run_id))

    def cancel_run(self, thread_id: str, run_id: str) -> Run:
        """Ask the API to cancel a run (``POST .../cancel``); it goes ``cancelling``, then ``cancelled``."""
        return self._run(cancel_run_request(thread_id, run_id))

    def submit_tool_outputs(self, thread_id: str, run_id: str, tool_outputs: object) -> Run:
        """
        Answer the tool calls of a ``requires_action`` run (``POST .../submit_tool_outputs``).

        :param tool_outputs: ``[{"tool_call_id": ..., "output": "..."}]`` or ``{tool_call_id: output}``;
            outputs are strings (checked before anything is sent).
        """
        return self._run(submit_tool_outputs_request(thread_id, run_id, tool_outputs))

    def create_feedback(
        self,
        trace_id: str,
        value: int,
        *,
        weight: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """
        Record feedback on a trace in Portkey (``POST /feedback``); returns Portkey's answer as sent.

        :param value: A whole number from -10 to 10.
        :param weight: From 0 to 1 (Portkey's default 1.0).
        :param metadata: String pairs stored with the feedback (e.g. ``_user``).
        """
        api_request = feedback_request(trace_id, value, weight=weight, metadata=metadata)
        return parse_feedback(api_request, self.request(api_request), self.settings.secrets)

    def get_run_step(
        self, thread_id: str, run_id: str, step_id: str, include: Collection[str] | None = None
    ) -> RunStep:
        """Retrieve one run step (``GET /threads/{thread_id}/runs/{run_id}/steps/{step_id}``)."""
        api_request = run_step_request(thread_id, run_id, step_id, include)
        return parse_run_step(api_request, self.request(api_request), self.settings.secrets)

    def list_run_steps(
        self,
        thread_id: str,
        run_id: str,
        *,
        limit: int = 100,
        order: str = "asc",
        include: Collection[str] | None = None,
    ) -> list[RunStep]:
        """
        All steps of a run, across pages, as the official SDK pages: the next page starts after the
        last step of this one, until ``has_more`` is false or, from a server that leaves
        ``has_more`` out, a page comes back empty.
        """
        steps: list[RunStep] = []
        after: str | None = None
        while True:
            api_request = list_run_steps_request(
                thread_id, run_id, limit=limit, order=order, after=after, include=include
            )
            page = parse_run_step_list(api_request, self.request(api_request), self.settings.secrets)
            steps += [parse_run_step(api_request, item, self.settings.secrets) for item in page.data]
            after = next_page_after(api_request, page, after)
            if after is None:
                return steps

    def test_connection(self) -> tuple[bool, str]:
        """
        Ask for a step that cannot exist: a 404 proves the URL, the keys and the routing all work.

        Harmless (a read) and cheap (one request, no retries).
        """
        probe = (
            "thread_airflow_connection_test",
            "run_airflow_connection_test",
            "step_airflow_connection_test",
        )
        try:
            with type(self)(
                self.portkey_conn_id, max_retries=0, trace_id=self.trace_id, metadata=self.metadata
            ) as hook:
                hook.get_run_step(*probe)
                base_url = hook.settings.base_url
        except PortkeyNotFoundError as error:
            return True, f"Connected: Portkey and the upstream answered ({error.description} -> 404)."
        except Exception as error:
            return False, str(error)
        return True, f"Connected to {base_url}."

    # -- the Responses API (airflow_provider_portkey.responses_api) ----------------------------------

    def _response(self, api_request: ApiRequest) -> Response:
        return parse_response(api_request, self.request(api_request), self.settings.secrets)

    def create_response(self, body: Mapping[str, Any], *, background: bool = True) -> Response:
        """
        Start a response (``POST /responses``); with ``background`` it returns at once, ``queued``.

        :param body: The API's fields by their API names (``model``, ``input``, ``instructions``,
            ``tools``, ``metadata``, ``previous_response_id``...), checked before anything is sent.
        """
        return self._response(create_response_request(response_body(body, background=background)))

    def get_response(self, response_id: str, include: Collection[str] | None = None) -> Response:
        """Retrieve a response (``GET /responses/{response_id}``)."""
        return self._response(get_response_request(response_id, include))

    def cancel_response(self, response_id: str) -> Response:
        """Cancel a background response (``POST /responses/{response_id}/cancel``)."""
        return self._response(cancel_response_request(response_id))

    def delete_response(self, response_id: str) -> dict[str, Any]:
        """Delete a stored response (``DELETE /responses/{response_id}``); returns the API's answer."""

        api_request = delete_response_request(response_id)
        return parse_deletion(api_request, self.request(api_request), self.settings.secrets)

    def list_response_input_items(
        self, response_id: str, *, order: str = "asc", include: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every input item of a response, across pages as :meth:`list_run_steps` reads them, as sent."""

        items: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            api_request = list_input_items_request(response_id, order=order, after=after, include=include)
            page = parse_item_list(api_request, self.request(api_request), self.settings.secrets)
            items += page.data
            after = next_page_after(api_request, page, after)
            if after is None:
                return items
