"""LAVIS's log.txt of a run: the config as indented JSON, then one JSON line per logged statistics.

Reading it here (not in plots) lets the runner keep it true across resumes without importing matplotlib:
a resumed run re-runs the epochs after its checkpoint, so their old lines are dropped first and each
epoch appears once, and the config block is written once, at the start of the run.
"""

import json

from lavis_gated.common.atomic_files import atomic_file


def read_log(path):
    """log.txt -> the list of its JSON values, in order."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    decoder, entries, pos = json.JSONDecoder(), [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return entries
        try:
            entry, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not a LAVIS log (JSON values one after another): {err}") from err
        entries.append(entry)


def is_config(entry):
    return isinstance(entry, dict) and "run" in entry and "model" in entry


def logged_config(entries):
    """The run config that LAVIS writes first into log.txt, or {}."""
    return next((e for e in entries if is_config(e)), {})


def entry_epoch(entry, train_position):
    """The epoch an entry reports: <split>_epoch of an evaluation ("best" in the test phase), train_epoch
    of a training line, else (LAVIS's own tasks log no epoch) the training line's position."""
    epochs = [v for k, v in entry.items() if k.endswith("_epoch") and not k.endswith("_best_epoch")]
    if epochs:
        return epochs[0]
    return train_position if any(k.startswith("train_") for k in entry) else None


def entries_before(entries, start_epoch):
    """The entries a run resumed at `start_epoch` keeps: the config, and the statistics of the epochs
    before it; the test phase's lines (epoch "best") are dropped too, since it runs again at the end."""
    kept, train_position = [], 0
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        is_train = any(k.startswith("train_") for k in entry)
        epoch = entry_epoch(entry, train_position)
        train_position += is_train
        if is_config(entry) or (isinstance(epoch, int) and epoch < start_epoch):
            kept.append(entry)
        elif epoch is None and not is_train:
            kept.append(entry)  # e.g. a resume note
    return kept


def write_log(path, entries):
    """Rewrite log.txt atomically in LAVIS's layout (config indented, statistics one per line)."""
    with atomic_file(path, "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry, indent=4 if is_config(entry) else None) + "\n")


def continue_log(path, start_epoch, note):
    """Prepare a resumed run's log.txt: epochs >= start_epoch dropped, then `note` (a dict) appended."""
    write_log(path, entries_before(read_log(path), start_epoch) + [note])
