"""Flask CLI commands: `flask db upgrade`, `flask keys ...`, `flask scheduler`."""

from __future__ import annotations

import signal
import threading

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy.orm import Session

from app import metrics, migrate
from app.domain.errors import StepwiseError
from app.domain.roles import Role
from app.services import api_keys, scheduler

db_cli = AppGroup("db", help="Database schema (Alembic migrations).")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def upgrade(revision: str) -> None:
    """Migrate the database to REVISION (default: head)."""
    migrate.upgrade(current_app.extensions["stepwise"].settings.database_url, revision)
    click.echo(f"database at {revision}")


@click.command("scheduler")
def scheduler_command() -> None:
    """Run the scheduler: retries, scheduled starts, deadlines, recovery, retention.

    Safe to run several: one leads (a PostgreSQL advisory lock), the others stand by.
    """
    rt = current_app.extensions["stepwise"]
    settings = rt.settings
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    scheduler.run(
        rt,
        scheduler.SchedulerSettings(
            interval_seconds=settings.scheduler_interval_seconds,
            queued_grace_seconds=settings.queued_grace_seconds,
            worker_lost_seconds=settings.worker_lost_seconds,
            retention_days=settings.retention_days,
        ),
        stop,
    )


keys_cli = AppGroup("keys", help="API keys: create (shown once), list, revoke.")


def _sessions() -> Session:
    return current_app.extensions["stepwise"].sessions()


@keys_cli.command("create")
@click.option("--name", required=True, help="A name to tell the key by (unique).")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--quiet", is_flag=True, help="Print the key alone.")
def keys_create(name: str, role: str, quiet: bool) -> None:
    """Create a key and print it: it is shown this once."""
    try:
        with _sessions() as session:
            row, key = api_keys.create_key(session, name, role)
    except StepwiseError as err:
        raise click.ClickException(err.message) from err
    if quiet:
        click.echo(key)
    else:
        click.echo(f"{key}\n(key {row.name!r}, role {row.role}, id {row.id}: store it now, it is not shown again)")


@keys_cli.command("list")
def keys_list() -> None:
    """List keys: name, role, prefix, created, last used, revoked."""
    rows, after = [], None
    with _sessions() as session:
        while True:
            page = api_keys.list_keys(session, after=after)
            rows += page.items
            if page.next_key is None:
                break
            after = page.next_key
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked else "live"
        used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
        created = f"{row.created_at:%Y-%m-%d}"
        click.echo(f"{row.id}  {row.name:<24} {row.role:<7} {row.prefix}…  created {created}  used {used}  {state}")


@keys_cli.command("revoke")
@click.argument("id_or_name")
def keys_revoke(id_or_name: str) -> None:
    """Revoke a key by id or name; it stops working at once."""
    try:
        with _sessions() as session:
            row = api_keys.revoke_key(session, current_app.extensions["stepwise"].keys, id_or_name)
    except StepwiseError as err:
        raise click.ClickException(err.message) from err
    click.echo(f"revoked {row.name!r} ({row.id})")


def register_commands(app: Flask) -> None:
    """Add the `flask db`, `flask keys` and `flask scheduler` commands."""
    app.cli.add_command(db_cli)
    app.cli.add_command(keys_cli)
    app.cli.add_command(scheduler_command)
