"""The composition root: the one package that knows every part and wires them together.

controller/ is the door (core, journal, adapters, the typed facade in controller/api.py); web/
is the front-office panel; the MQTT link lives in controller/mqtt. Only this package imports
them all: ``compose`` builds the services around a running controller, ``simulation`` runs the
simulated campus, ``cli`` is the ``entry-buzzer`` command. Imports flow one way (checked by the
import contract in pyproject.toml): entry_buzzer -> web -> controller's facade, never back.
"""
