"""What the background-response example DAG does when its response completes, shared by its emulator
and gateway end-to-end tests."""

from __future__ import annotations

DAG_ID = "portkey_background_response"

#: Task states of a run whose response completes: the answer is used, the failure branch skipped.
ANSWERED_STATES = {
    "ask": "success",
    "wait_for_response": "success",
    "branch_on_status": "success",
    "use_answer": "success",
    "report_failure": "skipped",
}
