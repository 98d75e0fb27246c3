"""``tradelab dashboard``: the web dashboard over a runner's folder, the params, runs/ and the lake.

The environment is read here, at the edge: TRADELAB_DASHBOARD_TOKEN (the control token, never
printed; or from ./.env) and TRADELAB_LAKE. Loopback by default; any other address without a token is refused
before anything listens. ``--replay latest`` points it at the newest replay folder that ``tradelab
parity`` left (``runs/live/parity-*``, what ``make demo`` makes), so the demo can be looked at.
"""

from __future__ import annotations

import math
import socket
from pathlib import Path
from typing import Annotated

import typer

from data_lake import LakeError

from .ui import DEFAULT_LAKE, LakeOpt, out, secret_env, user_errors

TOKEN_ENV = "TRADELAB_DASHBOARD_TOKEN"
StateDirOpt = Annotated[Path, typer.Option(help="The live runner's folder (state.db, decisions.jsonl, status.json).")]
ParamsDirOpt = Annotated[Path, typer.Option(help="The params folder (current.json and its history).")]
RunsDirOpt = Annotated[Path, typer.Option(help="The nightly, weekend and evening run folders.")]
HostOpt = Annotated[str, typer.Option(help=f"Address to listen on; anything but loopback needs {TOKEN_ENV}.")]
ReplayOpt = Annotated[str | None, typer.Option(help="Show a replay's folder instead: 'latest' (the newest "
                                                    "<state-dir>/parity-*, as make demo leaves) or a folder.")]


def replay_folder(state_dir: Path, replay: str) -> Path:
    """``latest``: the newest ``<state_dir>/parity-*`` folder; anything else: that folder."""
    if replay != "latest":
        folder = Path(replay)
        if not (folder / "state.db").is_file() and not (folder / "decisions.jsonl").is_file():
            raise LakeError(f"--replay {replay}: no state.db or decisions.jsonl there (give a replay folder, or 'latest')")
        return folder
    found = sorted((p for p in state_dir.glob("parity-*") if p.is_dir()), key=lambda p: (p.name, p.stat().st_mtime))
    if not found:
        raise LakeError(f"--replay latest: no {state_dir}/parity-* folder (run `tradelab parity` or `make demo` first)")
    return found[-1]


def _listen(host: str, port: int) -> socket.socket:
    """The bound listening socket (port 0: a free one), so the URL printed is the one served."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise LakeError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise LakeError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                        "try another --port, or 0 for a free one") from None
    sock.listen(128)
    return sock


@user_errors
def dashboard(
    state_dir: StateDirOpt = Path("runs/live"),
    params_dir: ParamsDirOpt = Path("params"),
    runs_dir: RunsDirOpt = Path("runs"),
    lake: LakeOpt = DEFAULT_LAKE,
    host: HostOpt = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one; the URL is printed).")] = 8050,
    replay: ReplayOpt = None,
    refresh: Annotated[float, typer.Option(help="Seconds between the live page's updates.")] = 1.0,
) -> None:
    """Serve the dashboard (live page, research pages, control API) on this machine."""
    import uvicorn

    from dashboard import DashboardConfig, create_app
    from dashboard.security import check_bind

    if not 0 <= port <= 65535:
        raise LakeError(f"--port must be between 0 and 65535 (0: any free port), got {port}")
    if not (math.isfinite(refresh) and 0.05 <= refresh <= 60):
        raise LakeError(f"--refresh must be between 0.05 and 60 seconds, got {refresh}")
    token = secret_env(TOKEN_ENV)
    cfg = DashboardConfig(state_dir=replay_folder(state_dir, replay) if replay else state_dir, params_dir=params_dir,
                          runs_dir=runs_dir, lake=lake, host=host, port=port, token=token, refresh=refresh)
    try:
        check_bind(cfg)  # beyond loopback only with a token, and a token long enough
    except ValueError as exc:
        raise LakeError(str(exc)) from None
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    out.print(f"dashboard at http://{shown}:{bound}/ reading {cfg.state_dir}"
              f"{'' if (cfg.state_dir / 'state.db').exists() else ' (no state.db there yet)'}; control API "
              f"{'on (token set)' if token else 'read-only (no ' + TOKEN_ENV + ')'}; Ctrl-C stops",
              highlight=False, soft_wrap=True)
    config = uvicorn.Config(create_app(cfg), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
