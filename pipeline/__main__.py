"""``python -m pipeline`` runs the ``imageopt`` CLI (used to start child processes)."""

from pipeline.cli import main

main()
