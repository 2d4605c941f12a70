"""The one error type of contract/: a rule of the format was broken, worded for the user (one line).
Each side turns it into its own (pipeline: PipelineError; serve: its named errors)."""


class ContractError(Exception):
    """A table spec that names nothing readable, a model name or manifest that breaks the format."""
