"""Shared helper of the stand-in packages in this folder (GPU-host smoke runs only)."""


def missing(package, what, needed_for):
    """ImportError telling that `package` is a stand-in here, raised when `what` is actually used."""
    return ImportError(
        f"{what}: {package} is not installed on this host; benchmarks/gpu_host/stubs/{package} is an "
        f"empty stand-in that only lets LAVIS import. Install the real {package} for {needed_for}."
    )
