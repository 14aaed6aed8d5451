"""Property-based tests of the response interpretation shared by the sync hook and the trigger.

Whatever bytes, JSON, status and headers a server sends, ``core`` answers with a value or one of
the documented ``PortkeyError`` subclasses, and never quotes a secret it was asked to hide.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_portkey.errors import (
    PortkeyBadResponseError,
    PortkeyError,
    PortkeyLimitExhaustedError,
    PortkeyRedirectError,
    PortkeyRequestError,
)
from airflow_provider_portkey.models import RunStep
from airflow_provider_portkey.protocol import (
    error_for_status,
    interpret_response,
    parse_run_step,
    parse_run_step_list,
    run_step_request,
)
from airflow_provider_portkey.retries import RetryPolicy
from tests.support.secrets import SECRETS, assert_no_secret

REQUEST = run_step_request("thread_p", "run_p", "step_p")
RETRYABLE = {408, 429, 500, 502, 503, 504}
STATUSES = ["queued", "in_progress", "completed", "failed", "cancelled", "expired", "paused"]
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

secret = st.sampled_from(SECRETS)
text_with_secrets = st.one_of(
    st.text(max_size=60),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=20), secret, st.text(max_size=20)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text_with_secrets,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(text_with_secrets, children, max_size=4)
    ),
    max_leaves=20,
)
step_like = st.fixed_dictionaries(
    {
        "id": st.one_of(st.just("step_p"), text_with_secrets, scalars),
        "object": st.sampled_from(["thread.run.step", "thread.run", "list", *SECRETS]),
        "status": st.one_of(st.sampled_from(STATUSES), text_with_secrets),
    },
    optional={
        "step_details": json_values,
        "last_error": st.one_of(
            json_values, st.fixed_dictionaries({"code": text_with_secrets, "message": text_with_secrets})
        ),
        "usage": json_values,
        "metadata": json_values,
        "created_at": scalars,
        "expires_at": scalars,
        "type": text_with_secrets,
    },
)
payloads = st.one_of(json_values, step_like)


def outcome(call: Callable[[], Any]) -> tuple[Any, PortkeyError | None]:
    """What ``call`` returned, or the ``PortkeyError`` it raised (anything else propagates)."""
    try:
        return call(), None
    except PortkeyError as error:
        return None, error


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


bodies = st.one_of(
    st.binary(max_size=1200),
    payloads.map(encoded),
    st.builds(lambda a, s, b: a + s.encode() + b, st.binary(max_size=900), secret, st.binary(max_size=900)),
    payloads.map(encoded).flatmap(lambda body: st.integers(0, len(body)).map(lambda cut: body[:cut])),
)
#: Headers a server controls. The request and trace ids are quoted as they come: they are ids the
#: server made up, so the strategy never puts a key in them (a server that echoes a key there is
#: out of scope here).
headers = st.fixed_dictionaries(
    {},
    optional={
        "retry-after": st.one_of(
            text_with_secrets, st.integers(-10, 10**12).map(str), st.just("Wed, 21 Oct 2015 07:28:00 GMT")
        ),
        "location": text_with_secrets,
        "x-request-id": st.text(max_size=40),
        "x-portkey-trace-id": st.text(max_size=40),
        "content-type": st.sampled_from(["application/json", "text/html", ""]),
    },
)
statuses = st.one_of(st.integers(min_value=100, max_value=599), st.sampled_from(sorted(RETRYABLE)))


@given(status=statuses, header_values=headers, body=bodies)
@PROPERTY_SETTINGS
def test_any_answer_is_json_or_a_documented_error_without_a_secret(
    status: int, header_values: dict[str, str], body: bytes
) -> None:
    payload, error = outcome(lambda: interpret_response(REQUEST, status, header_values, body, SECRETS))

    if error is None:
        assert 200 <= status < 300
        assert payload == json.loads(body)
        return
    assert isinstance(error, PortkeyRequestError)
    assert not 200 <= status < 300 or isinstance(error, PortkeyBadResponseError)
    assert error.status == status
    assert str(error).startswith(REQUEST.description)
    assert_no_secret(str(error), repr(error), error.args, error.api_message)


@given(status=statuses, header_values=headers, body=bodies)
@PROPERTY_SETTINGS
def test_every_status_maps_to_one_error_class_with_a_sane_retry_after(
    status: int, header_values: dict[str, str], body: bytes
) -> None:
    error = error_for_status(REQUEST, status, header_values, body, SECRETS)

    assert isinstance(error, PortkeyRequestError)
    spent = isinstance(error, PortkeyLimitExhaustedError)  # a 429 may say the quota is spent
    assert error.transient == (status in RETRYABLE and not spent)
    assert isinstance(error, PortkeyRedirectError) == (300 <= status < 400)
    assert error.retry_after is None or error.retry_after >= 0
    assert_no_secret(str(error), repr(error), error.code, error.error_type, error.param, error.body)
    delay = RetryPolicy(max_retries=3, max_wait=30).decide(REQUEST, error, 0, rand=lambda: 0.5).delay
    assert (delay is not None) == error.transient
    assert delay is None or 0 <= delay <= 30


@given(payload=payloads)
@PROPERTY_SETTINGS
def test_any_json_is_a_run_step_or_a_bad_response_without_a_secret(payload: Any) -> None:
    step, error = outcome(lambda: parse_run_step(REQUEST, payload, SECRETS))

    if error is None:
        assert isinstance(step, RunStep)
        assert step.to_json() == payload  # lossless: XCom gets exactly what was sent
        return
    assert isinstance(error, PortkeyBadResponseError)
    assert "unexpected JSON" in str(error)
    assert_no_secret(str(error), repr(error))


@given(
    payload=st.one_of(json_values, st.fixed_dictionaries({"object": st.just("list"), "data": json_values}))
)
@PROPERTY_SETTINGS
def test_any_json_is_a_list_page_or_a_bad_response_without_a_secret(payload: Any) -> None:
    page, error = outcome(lambda: parse_run_step_list(REQUEST, payload, SECRETS))

    assert (page is None) != (error is None)
    if error is not None:
        assert isinstance(error, PortkeyBadResponseError)
        assert_no_secret(str(error), repr(error))
