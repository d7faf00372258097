"""Errors a user can act on. Raised for bad input, config or data; the CLI prints them as one line, exit code 2."""


class AlignlabError(ValueError):
    """A user-facing error: the message is one line naming where (file, line/record, field) and what to do."""


class DataError(AlignlabError):
    """Bad training or evaluation data (missing field, wrong type, empty response, malformed line)."""


class ConfigError(AlignlabError):
    """Bad recipe or command-line option (unknown key, unsupported combination)."""


class RunInterrupted(Exception):
    """SIGTERM or SIGINT stopped training after a step and its checkpoint; the CLI prints the message (which says
    how to resume) and exits with `exit_code`, 128 + the signal number (143 for SIGTERM, 130 for SIGINT)."""

    def __init__(self, signum: int, step: int, checkpoint: object):
        import signal

        self.exit_code = 128 + int(signum)
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; saved {checkpoint}: "
                         "continue with the same command and --resume")
