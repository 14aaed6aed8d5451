"""Cancel the remote job when a deferred task is stopped by a person, never when a triggerer stops.

A trigger is cancelled (``asyncio.CancelledError`` in :meth:`run`) for several reasons:

- a person marked the task failed or succeeded, or cleared it: the job it started should stop
  (what ``on_kill`` does on a worker);
- the triggerer shuts down, or the trigger moved to another triggerer: the job must go on.

Airflow 3.3+ tells them apart itself: it calls ``BaseTrigger.on_kill`` for the first case only, so
that is where the job is cancelled. Airflow 3.0-3.2 call no ``on_kill``, and a trigger cannot safely
tell the cases apart there: asking the Task SDK for the task's state from a cancelled trigger
(``RuntimeTaskInstance.get_task_states``, the Dataproc pattern) broke a real 3.0.6 triggerer's
supervisor channel ("Response read out of order"), killing every trigger on it (found by the
deployment tier). So before 3.3 a stopped deferred task leaves its job running: a missed cancel
only costs tokens, an unwanted one loses work. The task's own timeout still cancels in every
version (the resumed task does it).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_portkey.hooks.portkey_async import PortkeyAsyncHook
    from airflow_provider_portkey.triggers.base import PortkeyPollTrigger

    _Base = PortkeyPollTrigger
else:
    _Base = object

#: Longest the cancel may take (the triggerer gives ``on_kill`` 30 s by default on 3.3).
CANCEL_TIMEOUT = 20.0


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

    async def on_kill(self) -> None:
        """Airflow 3.3+: a person stopped the deferred task; cancel the job (never raises)."""
        if self.cancel_on_kill:
            await self._cancel("the task was stopped while deferred")

    async def _cancel(self, why: str) -> None:
        try:
            async with asyncio.timeout(CANCEL_TIMEOUT):
                self.log.info("%s: %s", why.capitalize(), await self.cancel_remote(self.make_hook()))
        except Exception as error:  # cancelled again, timed out, or the API failed: keep the job
            self.log.warning("Could not cancel %s %s (%s): %r", self.noun, self.target_id(), why, error)
