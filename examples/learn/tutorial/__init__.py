"""docs/tutorial.md, Part 1: "Mastering WebSockets with Go" built up step by step on `websockets`.

Each step is a program run from the repository root, `python -m examples.learn.tutorial.stepN_...`;
`tests/integration/test_tutorial_steps.py` runs every one and checks what the page says it does.
"""
