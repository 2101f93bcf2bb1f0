"""Checkpoint contents for tests of safe loading: an object that runs code when it is unpickled."""


class CodePayload:
    """Unpickling this runs `open(marker, "w")`: the shape of a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)
