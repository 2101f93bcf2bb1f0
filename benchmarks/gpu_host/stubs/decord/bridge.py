"""decord.bridge stand-in: set_bridge is called at LAVIS import time, so it only records its argument."""
_bridge = "native"


def set_bridge(new_bridge):
    global _bridge
    _bridge = new_bridge
