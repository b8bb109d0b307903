"""The interpreter tests in fresh processes, for sessions in which another test imported
triton before TRITON_INTERPRET could be set (see conftest.py). The processes start in the
background once the session's tests are collected (interpret_runs.py) and run beside the rest
of the suite; this test, moved to the end of the session, waits for them and reports."""

import pytest


@pytest.mark.timeout(1800)  # waits for the runs, which may take longer than any one test
def test_interpret_tests_in_a_fresh_process(interpret_in_process, interpret_runs):
    if interpret_in_process:
        pytest.skip("the interpret tests ran in this process")
    assert interpret_runs is not None, "the background runs were not started (conftest.py)"
    interpret_runs.thread.join()
    assert not interpret_runs.failed, "\n\n".join(interpret_runs.failed)
    assert interpret_runs.collected, "no test marked interpret was collected"
