"""``python -m deploykit`` runs the CLI."""

from deploykit.cli import main

main()
