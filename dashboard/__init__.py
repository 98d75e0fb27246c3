"""The dashboard: what the live runner holds and did, the research runs, and a control API.

One FastAPI app (``app.create_app``), started by ``tradelab dashboard``. It only *reads* the runner's
folder (state store opened read-only, the decision log, ``status.json``, ``HALT``), the params
files, ``runs/`` and the lake; its control actions go to the runner the way the CLI's do (the files
the runner polls), each written to the decision log with who asked and when.

* ``config``   - the frozen settings the CLI builds (folders, bind address, token)
* ``app``      - the app factory: routers, local assets (plotly.js served from the installed package)
* ``live``     - the live page and its server-sent events
* ``research`` - runs, params history and diffs, sweep heatmaps, regime timeline, lake contents
* ``control``  - the REST control API (status, halt, resume, reload, flatten one symbol)
"""

from .app import create_app
from .config import DashboardConfig

__all__ = ["DashboardConfig", "create_app"]
