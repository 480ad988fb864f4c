"""Errors that mean "bad input or settings", reported as one line, no trace."""


class UserError(Exception):
  """Invalid user input (config value, file, folder); the message names it."""
