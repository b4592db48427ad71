"""Tools for the experiments of docs/learn/experiments.md."""
