"""The ``portkey`` connection's fields as plain data.

Kept free of imports on purpose: Airflow's providers manager loads ``provider_info`` (which reads
this) while Airflow itself is still starting, so nothing here may import Airflow.
"""

from __future__ import annotations

from typing import Any

DEFAULT_BASE_URL = "https://api.portkey.ai/v1"
#: Portkey's web app, where the "Portkey logs" extra link points unless ``ui_url`` says otherwise.
DEFAULT_UI_URL = "https://app.portkey.ai"
CONN_TYPE = "portkey"
#: The hook's ``default_conn_name``, and every operator's, sensor's and trigger's default connection id.
#: Defined here, not on the hook, so a DAG file reads it without loading the hook (see docs/design.md).
DEFAULT_CONN_NAME = "portkey_default"

#: The connection's extra options: name -> (label, help text, JSON-schema of the form field).
#: One table feeds validation, provider info (``conn-fields``) and the hook's form widgets.
EXTRA_FIELDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "virtual_key": (
        "Virtual key",
        "Hosted Portkey: a stored provider key (x-portkey-virtual-key).",
        {"type": ["string", "null"], "format": "password"},
    ),
    "provider": (
        "Provider",
        "Upstream provider, e.g. openai, azure-openai or @slug (x-portkey-provider).",
        {"type": ["string", "null"]},
    ),
    "provider_api_key": (
        "Provider API key",
        "The upstream provider's key, sent as Authorization: Bearer.",
        {"type": ["string", "null"], "format": "password"},
    ),
    "config": (
        "Config",
        "A Portkey config id, or a config as a JSON object (x-portkey-config).",
        {"type": ["string", "object", "null"]},
    ),
    "custom_host": (
        "Custom host",
        "Self-hosted OpenAI-compatible upstream URL ending in /v1 (x-portkey-custom-host).",
        {"type": ["string", "null"], "format": "url"},
    ),
    "request_timeout": (
        "Gateway timeout (s)",
        "Sent to Portkey as x-portkey-request-timeout: the gateway gives up (408, retried) after this.",
        {"type": ["number", "null"], "minimum": 0},
    ),
    "read_timeout": (
        "Read timeout (s)",
        "How long this client waits for an answer. Default 60, or request_timeout + 5 when that is set.",
        {"type": ["number", "null"], "minimum": 0},
    ),
    "connect_timeout": (
        "Connect timeout (s)",
        "TCP/TLS connect timeout of each request. Default 10.",
        {"type": ["number", "null"], "minimum": 0},
    ),
    "max_retries": (
        "Max retries",
        "Retries of a transient failure (connection error, 408, 429, 5xx). Default 5.",
        {"type": ["integer", "null"], "minimum": 0},
    ),
    "max_retry_wait": (
        "Max retry wait (s)",
        "Cap on one backoff or Retry-After wait. Default 60.",
        {"type": ["number", "null"], "minimum": 0},
    ),
    "trace_id": (
        "Trace id",
        "Fixed x-portkey-trace-id for every request of this connection "
        "(default: one per task try, derived from the task instance).",
        {"type": ["string", "null"]},
    ),
    "metadata": (
        "Metadata",
        "JSON object of string values (at most 128 characters each) sent as x-portkey-metadata, "
        "merged over the task's dag_id, task_id and run_id.",
        {"type": ["object", "null"]},
    ),
    "ui_url": (
        "Portkey app URL",
        "Base URL of the Portkey web app for the 'Portkey logs' link. Default https://app.portkey.ai.",
        {"type": ["string", "null"], "format": "url"},
    ),
    "headers": (
        "Extra headers",
        "JSON object of further headers, for anything Portkey adds later.",
        {"type": ["object", "null"]},
    ),
}
