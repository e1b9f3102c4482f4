#!/usr/bin/env python3
"""Breaks learning itself and checks that the tests whose claim is "the
model learned" then fail (issue: same verdict on any machine; a test of
learning must still fail when learning is broken).

For every mutation below, the script copies the source tree to a scratch
folder, applies one edit, builds the test binaries named for it and runs
them; a mutation under which they still pass is a test that cannot fail,
and the script exits 1. The unmutated tree is run first (they must pass).
Takes about two minutes per mutation on 2 cores.

    scripts/learning_mutations.py [--keep]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (what is broken, file, exact original text, replacement, [gtest binaries and filters that must fail])
MUTATIONS = [
    ("the loss's gradient zeroed at the head: no weight ever moves", "train/step.cpp",
     "(scaler ? scaler->scale_loss(loss) : loss).backward();\n  // Read after backward",
     "scale(scaler ? scaler->scale_loss(loss) : loss, 0.0).backward();\n  // Read after backward",
     [("test_gradcam", "GradCam.*")]),
    ("labels shuffled across the training slices: nothing to learn", "data/dataset.cpp",
     "  channels_ = int(t.size(2));\n}",
     "  channels_ = int(t.size(2));\n"
     "  for (size_t i = rows_.size() - 1; i > 0; --i) std::swap(rows_[i].y, rows_[(i * 7919 + 13) % (i + 1)].y);\n}",
     [("test_gradcam", "GradCam.*")]),
    ("the sequence model's loss gradient zeroed: the LSTM never learns context", "seq/train_seq.cpp",
     "    loss.backward();\n    r.opt->step();", "    scale(loss, 0.0).backward();\n    r.opt->step();",
     [("test_sequence", "SeqTrain.Context*")]),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="ich_learning_mutation_")
    src = os.path.join(scratch, "src")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns("build*", ".git"))
    build = os.path.join(scratch, "build")
    subprocess.run(["cmake", "-S", src, "-B", build, "-G", "Ninja", "-DICH_ENABLE_CUDA=OFF"], check=True,
                   stdout=subprocess.DEVNULL)

    def failing(suites):
        subprocess.run(["cmake", "--build", build, "--target", *sorted({b for b, _ in suites})], check=True,
                       stdout=subprocess.DEVNULL)
        out = []
        for binary, filt in suites:
            r = subprocess.run([os.path.join(build, "bin", binary), f"--gtest_filter={filt}", "--gtest_brief=1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            lines = [x for x in r.stdout.splitlines() if "Grad-CAM:" in x or "Failure" in x]
            out.append((binary, filt, r.returncode != 0, lines[:2]))
        return out

    t0 = time.time()
    suites = sorted({s for m in MUTATIONS for s in m[4]})
    base = failing(suites)
    assert not any(f for _, _, f, _ in base), f"the tests fail before any mutation: {base}"
    survivors = []
    for what, rel, old, new, must_fail in MUTATIONS:
        path = os.path.join(src, rel)
        text = open(path).read()
        assert text.count(old) == 1, f"mutation '{what}': text not found once in {rel}"
        open(path, "w").write(text.replace(old, new))
        try:
            result = failing(must_fail)
        finally:
            open(path, "w").write(text)
        caught = all(f for _, _, f, _ in result)
        detail = "; ".join(f"{b} {filt}: {' | '.join(lines)}" for b, filt, _, lines in result)
        print(f"{'caught' if caught else 'MISSED'}  {what}: {detail}", flush=True)
        if not caught:
            survivors.append(what)
    if not args.keep:
        shutil.rmtree(scratch)
    print(f"{len(MUTATIONS) - len(survivors)} of {len(MUTATIONS)} broken learners caught in {time.time() - t0:.0f} s")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
