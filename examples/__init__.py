"""Example applications run with `hubbub serve --app examples.<module>:hub` from the repository root."""
