"""Serve the node with uvicorn until stopped (SIGINT or SIGTERM)."""

from __future__ import annotations

import logging

import uvicorn

from odmflow.node.app import create_app
from odmflow.node.config import NodeSettings


def serve(settings: NodeSettings, log_level: str = "info") -> None:
    """Listen on settings.host:port; the Prefect server of settings.api_url must be up."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,  # WebODM polls every 5 s per task: the node logs its own events instead
        timeout_keep_alive=30,
        proxy_headers=False,
    )
    uvicorn.Server(config).run()
