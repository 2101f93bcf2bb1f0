"""The bottom of the package: atomic files, checkpoint I/O and its key rule, threads, run log, progress."""
