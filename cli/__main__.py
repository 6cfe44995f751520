"""``python -m cli`` runs the ``imageopt`` CLI (used to start child processes)."""

from cli.app import main

main()
