"""One exception type for everything a user can fix, so the CLI can answer in one line, exit 2."""


class InputError(Exception):
    """Bad input: the message names the file and the fix. The CLI prints it and exits 2."""

    def __init__(self, message: str, path=None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)
