"""Entry buzzer and door access controller: the per-door daemon."""

__version__ = "0.1.0"
