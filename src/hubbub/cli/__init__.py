"""The `hubbub` command line: one module per subcommand, dispatched from `hubbub.cli.main`."""
