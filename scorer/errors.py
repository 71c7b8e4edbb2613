"""The base of every error a user can mend (a file, a setting, a model, a port): the command line
prints its message as one line and exits with status 2. Light on purpose: the CLI imports it
before it knows which command runs, and the service's supervisor should not load the engine."""

from __future__ import annotations


class UserError(Exception):
    """An error whose message says what is wrong and what to do; never a traceback."""
