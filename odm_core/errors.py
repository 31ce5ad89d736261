"""Errors a user can act on: each message names the file or option and what to do."""


class OdmInputError(Exception):
    """Bad input (photos, project folder, option value): shown to the user without a traceback."""


class OdmStageError(Exception):
    """A stage could not produce its outputs from valid input (too few matches, no model, ...)."""
