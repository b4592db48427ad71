"""An AI answer streamed token by token through hubbub (see README.md beside this file)."""
