"""A NodeODM-compatible processing node: NodeODM's REST API (2.x) over odmflow's Prefect server.

WebODM, pyodm, ClusterODM and CloudODM drive it unchanged. Every NodeODM task is an `odm-process` flow run
of the Prefect server (created through the deployment and work pool that `odmflow server up` sets up), so
the same task shows in Prefect's UI with its stages. Modules, in import order:

- `config`: the node's settings and constants (API version, status codes);
- `records`: one task's record (NodeODM's fields) and its files on disk;
- `store`: every task of the node, in memory and on disk, and each task's console;
- `options`: `/options` from the options catalogue, and a client's options checked and converted;
- `files`, `multipart`: uploads streamed to disk under safe names, seed.zip, GCP/geo routing;
- `prefect_io`: the Prefect calls (create, read, cancel flow runs; logs, progress, work pool);
- `packing`, `webhook`: all.zip in NodeODM's layout; the finished-task webhook with retries;
- `guard`: cancelled flow runs kept cancelled until they settle (and removed tasks' folders purged then);
- `monitor`: the background loop that maps flow runs onto NodeODM's status, progress and output;
- `lifecycle`: commit, initialisation, restart, cancel, remove;
- `routes_new`, `routes_task`, `app`: the HTTP API; `serve`: uvicorn.
"""
