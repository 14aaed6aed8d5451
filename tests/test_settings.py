"""Connection -> validated settings and request headers (no I/O: settings are plain data)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from airflow import __version__ as airflow_version

from airflow_provider_portkey import __version__
from airflow_provider_portkey.errors import PortkeyConfigurationError
from airflow_provider_portkey.hooks.base import user_agent
from airflow_provider_portkey.hooks.portkey import PortkeyHook
from airflow_provider_portkey.settings import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_READ_TIMEOUT,
    GATEWAY_TIMEOUT_MARGIN,
    PortkeySettings,
    normalize_base_url,
)
from tests.support.secrets import API_KEY, PROVIDER_KEY, VIRTUAL_KEY, assert_no_secret

UA = "airflow-provider-portkey/test"


def make(
    extra: dict[str, Any] | None = None,
    *,
    host: str | None = None,
    password: str | None = API_KEY,
    port: int | None = None,
) -> PortkeySettings:
    """Settings from connection parts; routed by a virtual key unless ``extra`` says otherwise."""
    options = {"virtual_key": VIRTUAL_KEY} if extra is None else extra
    return PortkeySettings.from_connection_fields(host=host, password=password, port=port, extra=options)


def config_error(
    extra: dict[str, Any] | None = None,
    *,
    host: str | None = None,
    password: str | None = API_KEY,
    port: int | None = None,
) -> str:
    with pytest.raises(PortkeyConfigurationError) as caught:
        make(extra, host=host, password=password, port=port)
    message = str(caught.value)
    assert_no_secret(message)
    return message


# -- host ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        (None, None, "https://api.portkey.ai/v1"),
        ("", None, "https://api.portkey.ai/v1"),
        ("   ", None, "https://api.portkey.ai/v1"),
        ("api.portkey.ai", None, "https://api.portkey.ai/v1"),
        ("https://api.portkey.ai", None, "https://api.portkey.ai/v1"),
        ("https://api.portkey.ai/", None, "https://api.portkey.ai/v1"),
        ("https://api.portkey.ai/v1", None, "https://api.portkey.ai/v1"),
        ("https://api.portkey.ai/v1/", None, "https://api.portkey.ai/v1"),
        ("  https://gw.example.com/v1  ", None, "https://gw.example.com/v1"),
        ("https://gw.example.com/portkey", None, "https://gw.example.com/portkey/v1"),
        ("gw.example.com", 8443, "https://gw.example.com:8443/v1"),
        ("https://gw.example.com:8443/v1", 8443, "https://gw.example.com:8443/v1"),
        ("localhost:8787", None, "http://localhost:8787/v1"),
        ("127.0.0.1", 8787, "http://127.0.0.1:8787/v1"),
        ("127.0.0.1:8787/v1/", None, "http://127.0.0.1:8787/v1"),
        ("[::1]:8787", None, "http://[::1]:8787/v1"),
        ("http://gw.internal:8787", None, "http://gw.internal:8787/v1"),
    ],
)
def test_host_is_normalised_to_a_v1_base_url(host: str | None, port: int | None, expected: str) -> None:
    assert normalize_base_url(host, port) == expected
    assert make(host=host, port=port).base_url == expected


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("ftp://api.portkey.ai", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("http://", "no host name"),
        ("https://:8080/v1", "no host name"),
        ("https://api.portkey.ai/v1?x=1", "no query or fragment"),
        ("https://api.portkey.ai/v1#frag", "no query or fragment"),
        ("https://api.portkey.ai:99999", "not a valid URL"),
        ("https://api.portkey.ai:port", "not a valid URL"),
        ("http://[::1", "not a valid URL"),
        ("https://api portkey.ai", "whitespace"),
        ("https://api.portkéy.ai", "ASCII"),
    ],
)
def test_bad_host_is_a_configuration_error_naming_host_and_value(host: str, why: str) -> None:
    message = config_error(host=host)
    assert "'host'" in message
    assert host.strip() in message
    assert why in message


def test_credentials_in_the_host_url_are_refused_without_echoing_the_password() -> None:
    message = config_error(host=f"https://user:{PROVIDER_KEY}@gw.example.com/v1")
    assert "'host'" in message
    assert "https://***@gw.example.com/v1" in message
    assert "credentials do not belong in the URL" in message


@pytest.mark.parametrize("port", [70000, -1])
def test_out_of_range_port_field_is_a_configuration_error(port: int) -> None:
    message = config_error(host="gw.example.com", port=port)
    assert f"'port' = {port}" in message
    assert "1 to 65535" in message


def test_port_field_zero_means_unset() -> None:
    assert make(host="gw.example.com", port=0).base_url == "https://gw.example.com/v1"


def test_port_field_that_disagrees_with_the_host_port_is_a_configuration_error() -> None:
    message = config_error(host="https://gw.example.com:8443", port=9000)
    assert "'port' = 9000" in message
    assert "8443" in message


# -- key and routing -----------------------------------------------------------------------------


@pytest.mark.parametrize("password", [None, ""])
def test_missing_api_key_is_a_configuration_error(password: str | None) -> None:
    message = config_error(password=password)
    assert "field 'password' is empty: the Portkey API key is required" in message
    assert "<redacted>" not in message  # an empty field has nothing to hide


@pytest.mark.parametrize("password", [f"{API_KEY}\n", f" {API_KEY}", f"{API_KEY}\u2019"])
def test_api_key_with_whitespace_or_non_ascii_is_refused_without_echoing_it(password: str) -> None:
    message = config_error(password=password)
    assert "'password' = <redacted>" in message


@pytest.mark.parametrize("extra", [{}, {"provider_api_key": PROVIDER_KEY}, {"trace_id": "t"}])
def test_no_way_to_choose_an_upstream_is_a_configuration_error(extra: dict[str, Any]) -> None:
    message = config_error(extra)
    assert "choose the upstream" in message
    assert "virtual_key" in message


def test_virtual_key_routes_through_x_portkey_virtual_key() -> None:
    headers = make({"virtual_key": VIRTUAL_KEY}).headers(UA)
    assert headers["x-portkey-api-key"] == API_KEY
    assert headers["x-portkey-virtual-key"] == VIRTUAL_KEY
    assert "Authorization" not in headers
    assert "x-portkey-provider" not in headers


def test_provider_and_provider_api_key_route_with_a_bearer_authorization() -> None:
    headers = make({"provider": "openai", "provider_api_key": PROVIDER_KEY}).headers(UA)
    assert headers["x-portkey-provider"] == "openai"
    assert headers["Authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "x-portkey-virtual-key" not in headers


def test_provider_slug_alone_is_enough_routing() -> None:
    headers = make({"provider": "@openai-prod"}).headers(UA)
    assert headers["x-portkey-provider"] == "@openai-prod"
    assert "Authorization" not in headers


def test_config_id_is_sent_as_is() -> None:
    assert make({"config": "pc-prod-1a2b3c"}).headers(UA)["x-portkey-config"] == "pc-prod-1a2b3c"


def test_config_as_json_object_is_sent_as_compact_json() -> None:
    config = {"retry": {"attempts": 3}, "provider": "openai", "api_key": PROVIDER_KEY}
    sent = make({"config": config}).headers(UA)["x-portkey-config"]
    assert json.loads(sent) == config
    assert " " not in sent


def test_config_as_json_string_is_validated_and_compacted() -> None:
    config = {"strategy": {"mode": "fallback"}, "targets": [{"virtual_key": "a"}, {"virtual_key": "b"}]}
    sent = make({"config": json.dumps(config, indent=2)}).headers(UA)["x-portkey-config"]
    assert json.loads(sent) == config
    assert "\n" not in sent


def test_config_that_looks_like_json_but_is_not_is_refused_without_echoing_it() -> None:
    message = config_error({"config": '{"api_key": "' + PROVIDER_KEY + '",'})
    assert "'config'" in message
    assert "not valid JSON" in message


def test_custom_host_with_provider_routes_to_a_self_hosted_upstream() -> None:
    extra = {"provider": "openai", "provider_api_key": PROVIDER_KEY, "custom_host": "http://127.0.0.1:9/v1/"}
    headers = make(extra).headers(UA)
    assert headers["x-portkey-custom-host"] == "http://127.0.0.1:9/v1"
    assert headers["x-portkey-provider"] == "openai"
    assert headers["Authorization"] == f"Bearer {PROVIDER_KEY}"


def test_custom_host_without_provider_is_a_configuration_error() -> None:
    message = config_error({"virtual_key": VIRTUAL_KEY, "custom_host": "http://127.0.0.1:9/v1"})
    assert "'custom_host'" in message
    assert "needs provider" in message


@pytest.mark.parametrize("custom_host", ["127.0.0.1:9/v1", "ftp://x/v1", "http://[::1/v1"])
def test_custom_host_that_is_not_an_http_url_is_a_configuration_error(custom_host: str) -> None:
    message = config_error({"provider": "openai", "custom_host": custom_host})
    assert "'custom_host'" in message
    assert custom_host in message


def test_provider_api_key_without_provider_is_refused_without_echoing_it() -> None:
    message = config_error({"virtual_key": VIRTUAL_KEY, "provider_api_key": PROVIDER_KEY})
    assert "'provider_api_key'" in message
    assert "needs provider" in message


@pytest.mark.parametrize("name", ["x-portkey-virtual-key", "X-Portkey-Provider", "x-portkey-config"])
def test_routing_through_free_headers_counts_as_routing(name: str) -> None:
    assert make({"headers": {name: "anything"}}).headers(UA)[name] == "anything"


# -- timeouts, retries, tracing, headers ---------------------------------------------------------


def test_request_timeout_is_sent_in_milliseconds_and_the_client_waits_a_little_longer() -> None:
    settings = make({"virtual_key": VIRTUAL_KEY, "request_timeout": 2.5})
    assert settings.headers(UA)["x-portkey-request-timeout"] == "2500"
    assert settings.read_timeout == 2.5 + GATEWAY_TIMEOUT_MARGIN


def test_read_timeout_is_the_clients_own_and_sends_no_gateway_header() -> None:
    settings = make({"virtual_key": VIRTUAL_KEY, "read_timeout": 7})
    assert settings.read_timeout == 7
    assert "x-portkey-request-timeout" not in settings.headers(UA)


def test_request_timeout_as_a_string_from_the_ui_is_accepted() -> None:
    settings = make({"virtual_key": VIRTUAL_KEY, "request_timeout": "30"})
    assert settings.headers(UA)["x-portkey-request-timeout"] == "30000"


def test_without_request_timeout_no_header_and_the_default_read_timeout() -> None:
    settings = make()
    assert "x-portkey-request-timeout" not in settings.headers(UA)
    assert settings.read_timeout == DEFAULT_READ_TIMEOUT


def test_connect_timeout_comes_from_extra() -> None:
    assert make({"virtual_key": VIRTUAL_KEY, "connect_timeout": 3}).connect_timeout == 3.0


def test_retry_defaults_and_values_from_extra() -> None:
    default = make()
    assert (default.max_retries, default.max_retry_wait) == (DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_WAIT)
    tuned = make({"virtual_key": VIRTUAL_KEY, "max_retries": "2", "max_retry_wait": 7.5})
    assert (tuned.max_retries, tuned.max_retry_wait) == (2, 7.5)
    assert isinstance(tuned.max_retries, int)


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("max_retries", 1.5, "whole number"),
        ("max_retries", -1, "non-negative"),
        ("max_retries", True, "non-negative number"),
        ("max_retry_wait", "soon", "must be a number"),
        ("request_timeout", float("inf"), "non-negative"),
        ("request_timeout", -3, "non-negative"),
        ("connect_timeout", [1], "non-negative"),
        ("provider", 7, "must be a string"),
        ("trace_id", "trace\nid", "control"),
        ("metadata", "not json", "JSON object"),
        ("metadata", {"_user": 1}, "string values"),
    ],
)
def test_bad_option_value_is_a_configuration_error_naming_the_field(name: str, value: Any, why: str) -> None:
    message = config_error({"virtual_key": VIRTUAL_KEY, name: value})
    assert f"'{name}'" in message
    assert why in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("virtual_key", f"{VIRTUAL_KEY}\n"),
        ("virtual_key", 12345),
        ("provider_api_key", f" {PROVIDER_KEY}"),
        ("headers", {"Authorization": f"Bearer {PROVIDER_KEY}\r\nX-Evil: 1"}),
        ("headers", {"bad name": PROVIDER_KEY}),
        ("headers", f'{{"x-key": "{PROVIDER_KEY}"'),
    ],
)
def test_bad_secret_option_is_refused_without_echoing_its_value(name: str, value: Any) -> None:
    message = config_error({"provider": "openai", name: value})
    assert f"'{name}' = <redacted>" in message


def test_hook_arguments_override_retries_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"virtual_key": VIRTUAL_KEY, "max_retries": 4, "max_retry_wait": 9}
    conn = {"conn_type": "portkey", "password": API_KEY, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_PORTKEY_TUNED", json.dumps(conn))
    from_connection = PortkeyHook("portkey_tuned").settings
    assert (from_connection.max_retries, from_connection.max_retry_wait) == (4, 9.0)
    overridden = PortkeyHook("portkey_tuned", max_retries=0, max_retry_wait=0.5).settings
    assert (overridden.max_retries, overridden.max_retry_wait) == (0, 0.5)


@pytest.mark.parametrize(
    ("name", "value"), [("max_retries", -1), ("max_retries", 1.5), ("max_retry_wait", -2)]
)
def test_bad_hook_retry_arguments_are_configuration_errors(name: str, value: Any) -> None:
    with pytest.raises(PortkeyConfigurationError, match=name):
        PortkeyHook(**{name: value})


def test_trace_id_and_metadata_headers() -> None:
    settings = make({"virtual_key": VIRTUAL_KEY, "metadata": '{"_user": "airflow", "team": "ml"}'})
    headers = settings.headers(UA, trace_id="dag.task.1")
    assert headers["x-portkey-trace-id"] == "dag.task.1"
    assert json.loads(headers["x-portkey-metadata"]) == {"_user": "airflow", "team": "ml"}
    fixed = make({"virtual_key": VIRTUAL_KEY, "trace_id": "fixed"})
    assert fixed.headers(UA, trace_id="dag.task.1")["x-portkey-trace-id"] == "fixed"


def test_free_headers_are_sent_and_may_add_anything_portkey_adds_later() -> None:
    extra = {"virtual_key": VIRTUAL_KEY, "headers": '{"x-portkey-cache-force-refresh": "true", "x-a": "b"}'}
    headers = make(extra).headers(UA)
    assert headers["x-portkey-cache-force-refresh"] == "true"
    assert headers["x-a"] == "b"


def test_a_requests_own_headers_are_sent_under_the_users_free_headers() -> None:
    beta = (("OpenAI-Beta", "assistants=v2"),)
    plain = make({"virtual_key": VIRTUAL_KEY}).headers(UA, request_headers=beta)
    assert plain["OpenAI-Beta"] == "assistants=v2"
    assert plain["x-portkey-virtual-key"] == VIRTUAL_KEY
    own = make({"virtual_key": VIRTUAL_KEY, "headers": '{"OpenAI-Beta": "assistants=v2,other=v1"}'})
    assert own.headers(UA, request_headers=beta)["OpenAI-Beta"] == "assistants=v2,other=v1"


def test_unknown_option_is_refused_naming_it_without_echoing_its_value() -> None:
    message = config_error({"virtual_key": VIRTUAL_KEY, "api_key": PROVIDER_KEY})
    assert "unknown option 'api_key'" in message
    assert "virtual_key" in message  # the known options are listed


def test_ui_prefixed_extra_keys_are_accepted() -> None:
    settings = make(
        {
            "extra__portkey__provider": "openai",
            "extra__portkey__provider_api_key": PROVIDER_KEY,
            "extra__portkey__request_timeout": "5",
            "extra__portkey__virtual_key": "",
        }
    )
    assert settings.provider == "openai"
    assert settings.provider_api_key == PROVIDER_KEY
    assert settings.request_timeout == 5.0
    assert settings.virtual_key is None


def test_every_request_says_user_agent_and_accept_and_no_api_beta_of_its_own() -> None:
    for extra in ({"virtual_key": VIRTUAL_KEY}, {"config": "pc-1"}, {"provider": "openai"}):
        headers = make(extra).headers(user_agent())
        assert "OpenAI-Beta" not in headers  # a request's own header (the Assistants API's)
        assert headers["Accept"] == "application/json"
        assert (
            headers["User-Agent"]
            == f"airflow-provider-portkey/{__version__} apache-airflow/{airflow_version}"
        )


def test_user_agent_names_the_package_and_the_airflow_version() -> None:
    assert re.fullmatch(r"airflow-provider-portkey/\S+ apache-airflow/\S+", user_agent())
    assert airflow_version in user_agent()


def test_settings_repr_and_secrets_never_show_a_key() -> None:
    settings = make(
        {
            "virtual_key": VIRTUAL_KEY,
            "provider": "openai",
            "provider_api_key": PROVIDER_KEY,
            "config": {"api_key": PROVIDER_KEY},
            "headers": {"x-upstream-key": PROVIDER_KEY},
        }
    )
    assert_no_secret(repr(settings), str(settings))
    assert {API_KEY, VIRTUAL_KEY, PROVIDER_KEY} <= set(settings.secrets)


def test_settings_are_immutable() -> None:
    settings = make()
    with pytest.raises(AttributeError):
        settings.api_key = "other"  # type: ignore[misc]
