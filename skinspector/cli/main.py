"""Root command group."""

from __future__ import annotations

import sys

import click

from skinspector import __version__
from skinspector.cli._common import configure_logging
from skinspector.cli.box import box, doctor
from skinspector.cli.bundle import bundle, update
from skinspector.cli.describe import describe
from skinspector.cli.dev import dev
from skinspector.cli.evaluation import compare_evals, report, review_checkpoints
from skinspector.cli.hub import hub
from skinspector.cli.kb import kb
from skinspector.cli.serve import devices, pair, serve
from skinspector.cli.sync import sync
from skinspector.cli.training import data, evaluate, export, merge, train
from skinspector.core.settings import Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="skinspector")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--log-json", is_flag=True, help="Log JSON lines (for services).")
@click.pass_context
def cli(ctx: click.Context, verbose: int, log_json: bool) -> None:
    """SKINspectoR edge: offline dermatology decision support for remote clinics.

    Settings come from SKINSPECTOR_* environment variables (nested with '__'), then flags.
    """
    configure_logging(verbose, log_json)
    ctx.obj = Settings()


cli.add_command(describe)
cli.add_command(box)
cli.add_command(doctor)
cli.add_command(dev)
cli.add_command(kb)
cli.add_command(serve)
cli.add_command(pair)
cli.add_command(devices)
cli.add_command(sync)
cli.add_command(hub)
cli.add_command(bundle)
cli.add_command(update)
cli.add_command(compare_evals)
cli.add_command(report)
cli.add_command(review_checkpoints)
cli.add_command(data)
cli.add_command(train)
cli.add_command(merge)
cli.add_command(export)
cli.add_command(evaluate)


def main() -> None:
    cli(prog_name="skinspector", args=sys.argv[1:])
