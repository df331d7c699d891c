"""One exception type for everything a user can fix, so the CLI can answer in one line, exit 2.

Failures of the user's environment (a read-only or full disk, no permission, a file where a folder
should be) are the user's to fix too: `user_os_error` turns such an OSError into an InputError that
names the path, so they are not reported as rimscope's own bugs.
"""
import errno


class InputError(Exception):
    """Bad input: the message names the file and the fix. The CLI prints it and exits 2."""

    def __init__(self, message: str, path=None):
        self.path = str(path) if path is not None else None
        super().__init__(f"{path}: {message}" if path is not None else message)


# errno -> what to do about it; every one is about the user's files, disks or permissions
_FIXES = {
    errno.EACCES: "fix the permissions or choose another output folder",
    errno.EPERM: "fix the permissions or choose another output folder",
    errno.EROFS: "choose an output folder on a writable disk",
    errno.ENOSPC: "free some space or choose another output folder, then rerun (finished "
                  "subjects are kept)",
    errno.EDQUOT: "free some space or choose another output folder, then rerun",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another output folder",
    errno.EISDIR: "a folder is where a file is expected: give a file path",
    errno.EEXIST: "a file is where a folder is needed: remove it or choose another output "
                  "folder",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "choose a shorter output folder",
    errno.ELOOP: "fix the path",
    errno.EMFILE: "raise the limit (ulimit -n)",
}


def user_os_error(exc: BaseException) -> "InputError | None":
    """An InputError naming the path for an OSError the user can fix; None for anything else."""
    if not isinstance(exc, OSError) or exc.errno not in _FIXES:
        return None
    path = exc.filename if exc.filename is not None else None
    return InputError(f"{exc.strerror or 'error'}; {_FIXES[exc.errno]}", path)
