"""``serve``: the local dashboard (gs_video_report.web) over the same state database."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from gs_video_report.batch.api import Engine
from gs_video_report.cli.common import (
    ApiKeyOpt,
    ConfigOpt,
    KeysFileOpt,
    Opt,
    SimulateOpt,
    VerboseOpt,
    api_target,
    handle_errors,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.cli.signals import STOP_SIGNALS
from gs_video_report.errors import UsageError


def serve_command(
    ctx: typer.Context,
    port: Annotated[
        int, Opt("--port", "-p", help="Port (0: any free one)", min=0, max=65535)
    ] = 8765,
    host: Annotated[
        str, Opt("--host", help="Address to listen on; anything but loopback shares the page")
    ] = "127.0.0.1",
    simulate: SimulateOpt = False,
    parallel: Annotated[
        int, Opt("--parallel", help="Videos at once for batches started from the page", min=1)
    ] = 4,
    config: ConfigOpt = None,
    api_key: ApiKeyOpt = None,
    keys_file: KeysFileOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Open a local dashboard: batches, live progress, retry, cancel and resume, lessons,
    a zip of everything, the key pool and the costs. It prints the URL to open (with a
    random token: requests without it are refused). Batches started from the page run in
    this process; Ctrl-C stops them resumable."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    setup_logging(rt, verbose=verbose, to_file=True)
    with handle_errors(verbose):
        settings = settings_from(config)
        with api_target(rt, settings, simulate=simulate, api_key=api_key, keys_file=keys_file) as (
            target,
            keys,
        ):
            from gs_video_report.web import Dashboard, serve

            engine = Engine(target, keys=keys, clock=rt.clock, config_file=config)
            dashboard = Dashboard(engine, simulated=simulate, parallel=parallel)
            rt.secrets.add(dashboard.token)  # the logs never carry it either

            def ready(url: str) -> None:
                if host not in ("127.0.0.1", "localhost", "::1"):
                    typer.echo(
                        f"warning: listening on {host}: anyone with the URL can use it", err=True
                    )
                note = " (simulated Gemini)" if simulate else ""
                typer.echo(f"Dashboard{note}: {url}", err=False)
                typer.echo("Ctrl-C stops it (batches running here stop resumable).", err=True)

            async def main() -> None:
                # Ctrl-C, a plain kill and a closed terminal (SIGHUP) all stop it cleanly,
                # as they stop `batch` (and a shell's background job, which starts with
                # SIGINT ignored, still stops on Ctrl-C's signal)
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for signum in STOP_SIGNALS:
                    loop.add_signal_handler(signum, stop.set)
                await serve(dashboard, host, port, ready, stop)

            try:
                asyncio.run(main())
            except OSError as exc:  # the port is taken, the address is not ours
                raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            typer.echo("dashboard stopped", err=True)
