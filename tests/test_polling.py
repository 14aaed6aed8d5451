"""``polling.poll_interval`` is what its docstring says: Airflow's poke-mode interval, for the same inputs.

Checked against Airflow's own ``BaseSensorOperator._get_next_poke_interval`` (private: Airflow has no
public hook for the interval), so a change in Airflow's formula or signature fails here.
"""

from __future__ import annotations

from airflow.sdk import DAG, BaseSensorOperator
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_portkey.polling import poll_interval
from airflow_provider_portkey.sensors.run_step import RunStepSensor


@given(
    poke_interval=st.floats(min_value=0, max_value=3600, allow_nan=False),
    poke_count=st.integers(min_value=1, max_value=30),
    started_at=st.floats(min_value=0, max_value=2e9, allow_nan=False),
    max_wait=st.one_of(st.none(), st.floats(min_value=0, max_value=1e5, allow_nan=False)),
    timeout=st.floats(min_value=1, max_value=1e7, allow_nan=False),
    elapsed=st.floats(min_value=0, max_value=1e7, allow_nan=False),
    backoff=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_poll_interval_capped_at_the_timeout_equals_airflows_poke_mode_interval(
    poke_interval: float,
    poke_count: int,
    started_at: float,
    max_wait: float | None,
    timeout: float,
    elapsed: float,
    backoff: bool,
) -> None:
    with DAG("backoff_dag", schedule=None):
        sensor = RunStepSensor(
            task_id="backoff_task",
            thread_id="t",
            run_id="r",
            step_id="s",
            poke_interval=poke_interval,
            timeout=timeout,
            exponential_backoff=backoff,
            max_wait=max_wait,
        )
    airflows = BaseSensorOperator._get_next_poke_interval(sensor, started_at, lambda: elapsed, poke_count)

    ours = poll_interval(  # with what the sensor hands its trigger
        sensor.poke_interval,
        poke_count,
        exponential_backoff=backoff,
        jitter_key=f"backoff_dag#backoff_task#{started_at}",
        max_wait=sensor.max_wait.total_seconds() if sensor.max_wait is not None else None,
    )

    # Without backoff Airflow returns poke_interval as it is; with it, capped at the time left.
    assert (min(ours, sensor.timeout - int(elapsed)) if backoff else ours) == airflows
