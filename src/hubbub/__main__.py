"""`python -m hubbub` is the `hubbub` command."""

from __future__ import annotations

import sys

from hubbub.cli.main import main

sys.exit(main())
