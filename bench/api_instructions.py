"""The API's instructions per run update, counted by valgrind: a measure the machine's speed
does not move.

    python -m bench.api_instructions [--small 100] [--large 500]

``bench.api_inprocess`` times what ``serve``'s API process spends on a ``PATCH /runs/{id}``
from the app's first layer to its answer (FastAPI, loadbell's edge, the handler and its
SQLite transaction), and that time moves with the machine by more than most changes to it
do. This bench counts the same work in instructions, under ``valgrind --tool=callgrind``
(``bench/callgrind.py``: the event loop only), so a change can be measured by itself on
any machine, before ``bench.api_path`` says what it does to the rate.

Each count is one process under valgrind that sets up what ``bench.api_inprocess`` does
(a fresh SQLite file, the first organization, ``--warm`` plus ``--large`` runs, one
webhook channel subscribed to ``test.started`` and never contacted, ``--warm`` run
updates) and then moves ``--small`` or ``--large`` runs to Running, one request after
another, through ASGI. The
figure is the difference of the two counts over the difference of the sizes: what each
further run update costs, without the set-up both share.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from bench import callgrind, loop
from bench.api_inprocess import PATCH, WARM, call, running_app


async def _updates(n: int, warm: int, prepared: int) -> None:
    """The child: the set-up, ``warm`` updates, then ``n`` more, each answered 200."""
    with tempfile.TemporaryDirectory(prefix="loadbell-api-instructions-") as tmp:
        async with running_app(Path(tmp), prepared) as (app, token, run_ids):
            for run_id in run_ids[: warm + n]:
                status = await call(app, "PATCH", f"/api/v1/runs/{run_id}", token, PATCH)
                if status != 200:
                    raise SystemExit(f"PATCH /runs/{run_id} answered {status}")


@click.command()
@click.option("--small", default=100, show_default=True, help="Run updates in the short count.")
@click.option("--large", default=500, show_default=True, help="Run updates in the long count.")
@click.option(
    "--warm",
    default=WARM,
    show_default=True,
    help="Run updates before either count starts (caches, the routes' lazy set-up).",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep callgrind's output files in this folder (for callgrind_annotate).",
)
@click.option("--child", "child_n", type=int, default=None, hidden=True)
@click.option("--prepared", type=int, default=0, hidden=True)
def main(
    small: int, large: int, warm: int, keep: Path | None, child_n: int | None, prepared: int
) -> None:
    """Instructions per PATCH /runs/{id} through the app, in process (valgrind)."""
    if child_n is not None:
        loop.run(_updates(child_n, warm, prepared))
        return
    callgrind.require_valgrind()
    if not 0 < small < large:
        raise click.UsageError("--small must be positive and less than --large")
    # Both children prepare the same runs, so their set-ups are the same work.
    prepared = warm + large
    with tempfile.TemporaryDirectory(prefix="loadbell-api-instructions-") as tmp:
        out = keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        click.echo("both counts under valgrind (minutes) ...", err=True)
        children = [
            ["--child", str(n), "--warm", str(warm), "--prepared", str(prepared)]
            for n in (small, large)
        ]
        per, counts = callgrind.per_unit(
            "bench.api_instructions", children, (small, large), out, "api"
        )
    click.echo(
        f"API instructions per PATCH /runs/{{id}} (sqlite, in process): {per:,.0f} "
        f"(counts of {small:,} and {large:,}: {counts[small]:,} and {counts[large]:,})"
    )


if __name__ == "__main__":
    main()
