"""Holds ich-eval's report.html to metrics.json and predictions.csv:
every number metrics.json has is on the page with the same value (data-key /
data-value), and nothing on the page claims a value metrics.json does not
have; the sections are there; the charts and thumbnails are PNG images
inlined as data: URIs (no external file, no script); the operating points
are the definition's (the highest threshold, among the scores, whose
sensitivity reaches 90/95/99%), recomputed from predictions.csv.

    report_check.py EVAL_DIR
One line and exit 0, or the first difference and exit 1.
"""
import base64
import csv
import json
import os
import sys
from html.parser import HTMLParser


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.keys, self.ops, self.sections, self.images, self.scripts, self.links = {}, {}, set(), [], 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a:
            self.keys[a["data-key"]] = a["data-value"]
        if "data-op" in a:
            self.ops[a["data-op"]] = a["data-value"]
        if tag == "section":
            self.sections.add(a.get("id"))
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "script":
            self.scripts += 1
        if tag == "link" or (tag == "a" and a.get("href", "").startswith("http")):
            self.links += 1


def operating_point(scores, labels, target):
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tp = fp = 0
    for j, i in enumerate(order):
        tp += labels[i]
        fp += 1 - labels[i]
        if j + 1 < len(order) and scores[order[j + 1]] == scores[i]:
            continue
        if tp >= target * pos - 1e-9:
            return scores[i], tp / pos, (neg - fp) / neg, tp / (tp + fp)
    return None


def main():
    d = sys.argv[1]
    page = Page()
    with open(os.path.join(d, "report.html"), encoding="utf-8") as f:
        page.feed(f.read())
    with open(os.path.join(d, "metrics.json")) as f:
        m = json.load(f)
    want = {"images": str(m["images"])}
    for k in ("weighted_log_loss", "mean_bce"):
        want[k] = "null" if m[k] is None else f"{m[k]:.6f}"
    for label, v in m["labels"].items():
        for k, x in v.items():
            want[f"{label}.{k}"] = str(x) if isinstance(x, int) else ("null" if x is None else f"{x:.6f}")
    if page.keys != want:
        diff = sorted(set(page.keys.items()) ^ set(want.items()))[:4]
        sys.exit(f"report.html and metrics.json differ: {diff}")
    for s in ("metrics", "charts", "operating-points", "confusion", "false-negatives", "false-positives"):
        if s not in page.sections:
            sys.exit(f"no section '{s}'")
    if page.scripts or page.links:
        sys.exit("the page is not self-contained (script or external link)")
    if len(page.images) < 3:
        sys.exit(f"{len(page.images)} images, expected the 3 charts at least")
    for src in page.images:
        if not src.startswith("data:image/png;base64,") or \
           not base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n"):
            sys.exit("an image is not an inlined PNG")
    with open(os.path.join(d, "predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    names = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]
    checked = 0
    for name in names:
        scores = [float(r["p_" + name]) for r in rows]
        labels = [int(r[name]) for r in rows]
        for target in (0.90, 0.95, 0.99):
            op = operating_point(scores, labels, target)
            key = f"op.{name}.{target:.2f}"
            got = [page.ops.get(f"{key}.{w}") for w in ("threshold", "sensitivity", "specificity", "ppv")]
            if op is None:
                if any(g != "null" for g in got):
                    sys.exit(f"{key}: the page has {got}, the definition has none")
                continue
            # the page prints 6 decimals (metrics.json's format), predictions.csv 6 significant digits
            for w, g, v in zip(("threshold", "sensitivity", "specificity", "ppv"), got, op):
                tol = 1e-6 + 1e-5 * abs(v) if w == "threshold" else 1e-6
                if g is None or g == "null" or abs(float(g) - v) > tol:
                    sys.exit(f"{key}.{w}: page {g}, definition {v}")
            checked += 1
    print(f"report.html: {len(page.keys)} numbers equal metrics.json, {checked} operating points, "
          f"{len(page.images)} inlined images, every section")


if __name__ == "__main__":
    main()
