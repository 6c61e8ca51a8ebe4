"""``python -m cardsvc`` runs the command line."""

from cardsvc.cli import main

main()
