"""The run's Dask cluster: an address where no scheduler answers is refused before any stage works."""

from __future__ import annotations

import socket

import pytest

from odm_core.errors import OdmInputError
from tasks.dask_cluster import check_scheduler


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_address_without_a_scheduler_is_named_with_a_fix() -> None:
    address = f"tcp://127.0.0.1:{_closed_port()}"
    with pytest.raises(OdmInputError, match=f"--dask-address {address}: no Dask scheduler answers") as err:
        check_scheduler(address, timeout_s=2.0)
    assert "leave --dask-address out" in str(err.value)
