"""Errors a user can act on. Raised for bad input, config or data; the CLI prints them as one line, exit code 2."""


class AlignlabError(ValueError):
    """A user-facing error: the message is one line naming where (file, line/record, field) and what to do."""


class DataError(AlignlabError):
    """Bad training or evaluation data (missing field, wrong type, empty response, malformed line)."""


class ConfigError(AlignlabError):
    """Bad recipe or command-line option (unknown key, unsupported combination)."""
