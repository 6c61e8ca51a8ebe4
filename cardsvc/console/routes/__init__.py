"""The console's pages, one module per area; ``cardsvc.console`` joins their routers in
the order below (a fixed path such as ``/persons/new`` before ``/persons/{code}``)."""
