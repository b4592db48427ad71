"""`hubbub serve`: run the hub server, with settings from flags, `HUBBUB_*` variables and a config file."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from hubbub.cli.settings import (
    CONFIG_VARIABLE,
    SERVE_OPTIONS,
    add_options,
    checked_settings,
    config_path,
    resolve,
    unknown_variables,
)
from hubbub.errors import ConfigError

if TYPE_CHECKING:
    from hubbub.core.hub import Hub

NAME = "serve"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        NAME,
        help="run the hub server",
        description="Run the hub server. Every setting is a flag, a HUBBUB_<FLAG> environment variable and a"
        " key of the config file (hubbub config writes one); a flag wins over a variable, a variable over the"
        " file, the file over the default.",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help=f"read settings from this TOML file, keys named as the flags with underscores (also {CONFIG_VARIABLE})",
    )
    add_options(p, SERVE_OPTIONS)


def run(args: argparse.Namespace) -> int:
    """Check everything that can be checked before listening (one line and exit 2 for what is wrong), then serve."""
    from hubbub import backends
    from hubbub.server import tls
    from hubbub.server.run import run_server

    for warning in unknown_variables(os.environ):
        print(f"hubbub serve: {warning}", file=sys.stderr)
    try:
        config = config_path(args, os.environ)
        values = resolve(args, SERVE_OPTIONS, os.environ, config)
        settings = checked_settings(values, config)
        backends.check(settings)
        if settings.tls_cert:
            tls.server_context(settings.tls_cert, settings.tls_key)  # a bad file: one line, exit 2
        if settings.auth_public_key:
            from hubbub.auth.keys import PublicKey

            PublicKey.load(settings.auth_public_key)  # a bad file: one line and exit 2, as the other flags
        if settings.users_file:
            from hubbub.auth.passwords import Users

            Users.load(settings.users_file)  # a bad file: one line and exit 2, before anything starts
        app: Hub | None = None
        if settings.static_dir:
            from hubbub.server.static_files import StaticFiles

            try:
                StaticFiles(settings.static_dir)
            except OSError:
                raise ConfigError(f"--static: {settings.static_dir!r} is not a readable directory") from None
        if values.get("app"):
            from hubbub.integration.apps import load_app

            app = load_app(values["app"], settings)
    except ConfigError as exc:  # backends.MissingExtra too
        print(f"hubbub serve: {exc}", file=sys.stderr)
        return 2
    return run_server(settings, app)
