"""Commands for load tests: `run` (wrap k6, Locust or any command) and `receiver`."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click


@click.command()
@click.option(
    "--port",
    default=9000,
    show_default=True,
    type=int,
    envvar="LOADBELL_RECEIVER_PORT",
    show_envvar=True,
    help="Port on 127.0.0.1.",
)
@click.option(
    "--status",
    default=200,
    show_default=True,
    type=int,
    envvar="LOADBELL_RECEIVER_STATUS",
    show_envvar=True,
    help="Status to answer.",
)
def receiver(port: int, status: int) -> None:
    """Run a local receiver that prints every request (to see what loadbell sends)."""
    from loadbell.cli.common import run_coroutine  # not for `run`: it starts lighter
    from loadbell.testing.receiver import serve_forever

    try:
        run_coroutine(serve_forever(port, status))
    except KeyboardInterrupt:
        pass


class _LenientEnvOption(click.Option):
    """An option of `loadbell run` whose environment variable must not stop the load test.

    A bad value typed on the command line is a usage error as usual. The same value in the
    environment (often set once for a whole CI pipeline) only prints a warning naming the
    variable, and the option falls back to its default: a notification setting never keeps
    the load test from running.
    """

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as exc:
            source = ctx.get_parameter_source(self.name or "")
            if source is not click.core.ParameterSource.ENVIRONMENT:
                raise
            default = self.get_default(ctx)
            why = exc.message.rstrip(".")
            shown = "unset" if default is None else default
            click.echo(
                f"loadbell: ignoring {self.envvar}={os.environ.get(str(self.envvar), '')!r} "
                f"({why}); {self.opts[0]} keeps its default ({shown})",
                err=True,
            )
            return super().process_value(ctx, default)


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option(
    "--test",
    "test_name",
    envvar="LOADBELL_TEST",
    show_envvar=True,
    default=None,
    help="Load test name. Default: the k6 script's file name, or the command's name.",
)
@click.option(
    "--project",
    cls=_LenientEnvOption,
    type=int,
    envvar="LOADBELL_PROJECT",
    show_envvar=True,
    default=None,
    help="Project id. Default: the first project the token can see.",
)
@click.option(
    "--trigger",
    cls=_LenientEnvOption,
    type=click.Choice(["manual", "scheduled"]),
    envvar="LOADBELL_TRIGGER",
    show_envvar=True,
    default="manual",
    show_default=True,
    help="How the run was started (channels can filter on it).",
)
@click.option(
    "--report-interval",
    cls=_LenientEnvOption,
    type=click.FloatRange(min=1),
    envvar="LOADBELL_REPORT_INTERVAL",
    show_envvar=True,
    default=60.0,
    show_default=True,
    help="Seconds between intermediate reports.",
)
@click.option(
    "--apdex-t",
    cls=_LenientEnvOption,
    type=click.FloatRange(min=0, min_open=True),
    envvar="LOADBELL_APDEX_T",
    show_envvar=True,
    default=500.0,
    show_default=True,
    help="Apdex threshold T in milliseconds (k6 only).",
)
@click.option(
    "--no-apdex",
    cls=_LenientEnvOption,
    is_flag=True,
    envvar="LOADBELL_NO_APDEX",
    show_envvar=True,
    help="k6: skip the per-request stream behind Apdex (saves k6 CPU in the fastest tests).",
)
@click.option(
    "--metrics-file",
    cls=_LenientEnvOption,
    type=click.Path(dir_okay=False),
    envvar="LOADBELL_METRICS_FILE",
    show_envvar=True,
    default=None,
    help="A JSON metrics document the command writes; read at the end (and when it changes).",
)
@click.option("--url", envvar="LOADBELL_URL", show_envvar=True, default=None, help="Server URL.")
@click.option("--token", envvar="LOADBELL_TOKEN", show_envvar=True, default=None, help="API token.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    test_name: str | None,
    project: int | None,
    trigger: str,
    report_interval: float,
    apdex_t: float,
    no_apdex: bool,
    metrics_file: str | None,
    url: str | None,
    token: str | None,
    command: tuple[str, ...],
) -> None:
    """Run a load test and report it: `loadbell run [options] -- k6 run script.js`.

    Works with `k6 run` (live status, thresholds, Apdex, intermediate reports) and with
    any other command (exit 0: passed; non-zero: failed; a signal: aborted by user).
    Exits with the command's own exit code, whatever happens to the notifications.
    """
    from loadbell.client import Client, RunReporter
    from loadbell.integrations import command as generic
    from loadbell.integrations import k6, k6_run

    # "" and not None: click has read LOADBELL_PROJECT already (and warned if it was bad).
    client = Client(url, token, project if project is not None else "")
    if not client.enabled:
        click.echo(
            "loadbell: LOADBELL_URL and LOADBELL_TOKEN are not both set; "
            "running without notifications",
            err=True,
        )
    reporter = RunReporter(client)
    # Installed until the process exits, never removed: a signal after the command exited
    # only cuts the wait for the last notifications short (the exit code stays its own).
    relay = generic.SignalRelay()
    relay.install()
    argv = list(command)
    if k6.is_k6_run(argv):
        code = k6_run.run_k6(
            argv,
            reporter,
            test_name=test_name,
            project=project,
            trigger=trigger,
            report_interval=report_interval,
            apdex_t_ms=None if no_apdex else apdex_t,
            metrics_file=metrics_file,
            relay=relay,
        )
    else:
        code = generic.run_generic(
            argv,
            reporter,
            test_name=test_name or os.path.basename(argv[0]),
            project=project,
            trigger=trigger,
            report_interval=report_interval,
            metrics_file=metrics_file,
            relay=relay,
        )
    if not reporter.close(timeout=30, cancel=relay.after_exit) and relay.after_exit.is_set():
        click.echo("loadbell: interrupted; not waiting for the last notifications", err=True)
    if reporter.run_url:
        click.echo(f"loadbell: run {reporter.run_id}: {reporter.run_url}", err=True)
    # The exit code is decided. Ignore these signals from here on: while Python shuts down
    # it puts a Python-level handler back to the default, and a late Ctrl-C would kill us.
    for sig in generic.FORWARDED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)
