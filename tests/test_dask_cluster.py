"""The run's Dask cluster: an address where no scheduler answers is refused before any stage works; the
run's local workers yield the CPU to the flow process."""

from __future__ import annotations

import os
import socket

import pytest
from distributed import Client

from odm_core.errors import OdmInputError
from tasks.dask_cluster import WORKER_NICENESS, _start_cluster, check_scheduler, local_workers


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_address_without_a_scheduler_is_named_with_a_fix() -> None:
    address = f"tcp://127.0.0.1:{_closed_port()}"
    with pytest.raises(OdmInputError, match=f"--dask-address {address}: no Dask scheduler answers") as err:
        check_scheduler(address, timeout_s=2.0)
    assert "leave --dask-address out" in str(err.value)


def test_the_runs_local_workers_yield_the_cpu_to_the_flow_process() -> None:
    """The run's local workers run at a lower priority than the process that started them (the flow's,
    where mapping runs), so that work there is not slowed by the workers' units or imports; a worker
    that its nanny restarts does too."""
    cluster = _start_cluster(local_workers(1))
    expected = [min(19, os.nice(0) + WORKER_NICENESS)]
    try:
        with Client(cluster) as client:
            niceness = list(client.run(os.nice, 0).values())
            before = set(client.scheduler_info()["workers"])
            client.restart_workers(list(before))
            client.wait_for_workers(1)
            after = set(client.scheduler_info()["workers"])
            restarted = list(client.run(os.nice, 0).values())
    finally:
        cluster.close()
    assert niceness == expected
    assert after and after != before and restarted == expected
