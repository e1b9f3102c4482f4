"""Reads a run's TensorBoard event files with TensorBoard's own reader (its
EventAccumulator, as `tensorboard --logdir` loads a run, orphaned data purged
at a restart) and checks that they say what RUN/log.csv says: the same tags
(one per scalar column), and for each the same steps, wall times and values
(float32 of log.csv's text, TensorBoard's scalar type), nothing more.

    tensorboard_check.py RUN [EXPECTED_ROWS]
Prints one line and exits 0, or names the first difference and exits 1.
"""
import csv
import os
import sys

import numpy as np
from tensorboard.backend.event_processing import event_accumulator

TAGS = {"train_loss": "train/loss", "lr": "lr", "images_per_second": "images_per_second"}


def tag_of(column):
    if column in TAGS:
        return TAGS[column]
    return "valid/" + column[len("valid_"):] if column.startswith("valid_") else None


def main():
    run = sys.argv[1]
    with open(os.path.join(run, "log.csv")) as f:
        rows = list(csv.DictReader(f))
    if len(sys.argv) > 2 and len(rows) != int(sys.argv[2]):
        sys.exit(f"log.csv has {len(rows)} rows, expected {sys.argv[2]}")
    acc = event_accumulator.EventAccumulator(os.path.join(run, "tensorboard"),
                                             size_guidance={event_accumulator.SCALARS: 0}, purge_orphaned_data=True)
    acc.Reload()
    have = set(acc.Tags()["scalars"])
    want = {}
    for column in rows[0]:
        tag = tag_of(column)
        if tag:
            want[tag] = [(int(r["step"]), float(r["wall_time"]), np.float32(float(r[column])))
                         for r in rows if r[column] != ""]
    want = {t: v for t, v in want.items() if v}
    if have != set(want):
        sys.exit(f"tags differ: events {sorted(have)}, log.csv {sorted(want)}")
    checked = 0
    for tag, expected in want.items():
        got = [(e.step, e.wall_time, np.float32(e.value)) for e in acc.Scalars(tag)]
        if got != expected:
            sys.exit(f"{tag}: events {got}, log.csv {expected}")
        checked += len(got)
    print(f"tensorboard: {len(want)} tags, {checked} scalars, {len(rows)} epochs equal to log.csv")


if __name__ == "__main__":
    main()
