"""The API's route modules, one per area; ``cardsvc.api.create_app`` includes their routers
(and those of the other areas: ``cardsvc.payments.routes``, ``cardsvc.console``).
"""
