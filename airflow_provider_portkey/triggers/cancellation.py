"""Cancel the remote job when a deferred task is stopped by a person, never when a triggerer stops.

A trigger is cancelled (``asyncio.CancelledError`` in :meth:`run`) for several reasons:

- a person marked the task failed or succeeded, or cleared it: the job it started should stop
  (what ``on_kill`` does on a worker);
- the triggerer shuts down, or the trigger moved to another triggerer: the job must go on.

Airflow 3.3+ tells them apart itself: it calls ``BaseTrigger.on_kill`` for the first case only, so
that is where the job is cancelled. Airflow 3.0-3.2 call no ``on_kill``: there, on cancellation,
the trigger asks the Task SDK for the task instance's state (``RuntimeTaskInstance.get_task_states``,
which the 3.0 triggerer serves) and cancels the job only when that state is known and is not
``deferred``. When the state cannot be read, nothing is cancelled: an unwanted cancel loses work, a
missed one only costs tokens. (On 3.3.2 the same Task SDK call from a cancelled trigger did not
answer within 20 s in the deployment tier, which is one more reason to use ``on_kill`` there.)
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_portkey._compat import TRIGGER_ON_KILL

if TYPE_CHECKING:
    from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
    from airflow_provider_portkey.triggers.base import PortkeyPollTrigger

    _Base = PortkeyPollTrigger
else:
    _Base = object

#: Longest the cancel may take (the triggerer gives ``on_kill`` 30 s by default on 3.3).
CANCEL_TIMEOUT = 20.0
_MISSING: Any = object()


async def task_instance_state(trigger: Any) -> Any:
    """
    The state of the task instance that deferred to ``trigger``, or ``_MISSING`` if unknown.

    ``_MISSING`` outside a triggerer (no task instance: ``dag.test()`` runs triggers inline) and when
    the Task SDK cannot answer. A cleared task instance has the state ``None``.
    """
    ti = getattr(trigger, "task_instance", None)
    if ti is None:
        return _MISSING
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from asgiref.sync import sync_to_async

    map_index = getattr(ti, "map_index", -1)
    map_index = map_index if isinstance(map_index, int) else -1
    states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
        dag_id=ti.dag_id,
        task_ids=[ti.task_id],
        run_ids=[ti.run_id],
        map_index=map_index if map_index >= 0 else None,
    )
    # The answer names a mapped task instance "<task_id>_<map_index>".
    key = f"{ti.task_id}_{map_index}" if map_index >= 0 else ti.task_id
    return (states or {}).get(ti.run_id, {}).get(key, _MISSING)


class CancelOnKillMixin(_Base):
    """
    Mixed into a trigger that waits on a job its task started: cancel the job when the task is stopped.

    :attr:`cancel_on_kill` is a trigger kwarg (default ``False``: kwargs of earlier releases keep
    their behaviour); the subclass says how to cancel in :meth:`cancel_remote`.
    """

    cancel_on_kill: bool = False

    @abstractmethod
    async def cancel_remote(self, hook: PortkeyAsyncHook) -> str:
        """Cancel the job unless it already ended; return what was done, for the log."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async for event in super().run():
                yield event
        except asyncio.CancelledError:
            if self.cancel_on_kill and not TRIGGER_ON_KILL:
                await self._cancel_if_task_stopped()
            raise

    async def on_kill(self) -> None:
        """Airflow 3.3+: a person stopped the deferred task; cancel the job (never raises)."""
        if self.cancel_on_kill:
            await self._cancel("the task was stopped while deferred")

    async def _cancel_if_task_stopped(self) -> None:
        """Airflow < 3.3: cancel the job if the task instance is no longer deferred; never raises."""
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                state = await task_instance_state(self)
        except Exception as error:  # timed out, or the Task SDK failed: keep the job
            state, reason = _MISSING, repr(error)
        else:
            reason = f"state {state}"
        if state is _MISSING or getattr(state, "value", state) == "deferred":
            self.log.info(
                "Wait on %s %s stopped, the task is not (%s): the %s goes on",
                self.noun,
                self.target_id(),
                reason,
                self.noun,
            )
            return
        await self._cancel(f"the task is now {state}")

    async def _cancel(self, why: str) -> None:
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                self.log.info("%s: %s", why.capitalize(), await self.cancel_remote(self.make_hook()))
        except Exception as error:  # cancelled again, timed out, or the API failed: keep the job
            self.log.warning("Could not cancel %s %s (%s): %r", self.noun, self.target_id(), why, error)
