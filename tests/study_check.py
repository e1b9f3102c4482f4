"""Holds ich-eval --studies to its definition, recomputed here from
predictions.csv and the split CSV (image -> study and patient):
a study's score is the highest p(label) over its slices, its truth whether
one of its slices is positive; at each operating point of
study_metrics.json the confusion counts, sensitivity, specificity, PPV and
NPV (and, where asked, PPV/NPV at the prevalence, by Bayes) are those of the
threshold; thresholds chosen on the data are the highest score whose
sensitivity reaches the target; thresholds from --thresholds are the file's;
the AUC is the Mann-Whitney statistic; every interval holds its estimate or
is null; report.html's study cells carry study_metrics.json's values, and
metrics.json (where there is one) holds the same object as "study_level".

    study_check.py EVAL_DIR SPLIT_CSV [THRESHOLDS_CSV]
One line and exit 0, or the first difference and exit 1.
"""
import csv
import json
import math
import os
import sys
from html.parser import HTMLParser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report_check import operating_point  # noqa: E402  the definition, written once

LABELS = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-study" in a:
            self.cells[a["data-study"]] = a["data-value"]


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def close(a, b, what, tol=5e-6):
    if a is None or b is None:
        if a is not b:
            fail(f"{what}: {a} vs {b}")
        return
    if abs(a - b) > tol:
        fail(f"{what}: {a} vs {b}")


def auc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def ratio(a, b):
    return a / b if b else None


def main():
    d, split = sys.argv[1], sys.argv[2]
    given = {}
    if len(sys.argv) > 3:
        for r in csv.DictReader(open(sys.argv[3])):
            given[(r["label"], float(r["target_sensitivity"]))] = float(r["threshold"]) if r["threshold"] else None
    study_of = {r["image_id"]: r["study_uid"] or r["image_id"] for r in csv.DictReader(open(split))}
    studies = {}
    for r in csv.DictReader(open(os.path.join(d, "predictions.csv"))):
        s = studies.setdefault(study_of[r["image_id"]], {"p": [0.0] * 6, "y": [0] * 6})
        for k, name in enumerate(LABELS):
            s["p"][k] = max(s["p"][k], float(r["p_" + name]))
            s["y"][k] |= int(r[name])
    exact = {}
    for r in csv.DictReader(open(os.path.join(d, "study_thresholds.csv"))):
        if r["threshold"]:
            exact[(r["label"], round(float(r["target_sensitivity"]), 9))] = float(r["threshold"])
    m = json.load(open(os.path.join(d, "study_metrics.json")))
    whole = os.path.join(d, "metrics.json")
    if os.path.exists(whole) and json.load(open(whole)).get("study_level") != m:
        fail("metrics.json's study_level is not study_metrics.json")
    prev = m["prevalence"]
    page = Page()
    page.feed(open(os.path.join(d, "report.html")).read())
    if not page.cells:
        fail("report.html has no study-level cells")
    for k, name in enumerate(LABELS):
        L = m["labels"][name]
        sc = [s["p"][k] for s in studies.values()]
        ys = [s["y"][k] for s in studies.values()]
        if L["studies"] != len(sc) or L["positives"] != sum(ys):
            fail(f"{name}: {L['studies']} studies, {L['positives']} positive; recomputed {len(sc)}, {sum(ys)}")
        close(L["auc"], auc(sc, ys), f"{name} AUC", 1e-6)
        for i, p in enumerate(L["operating_points"]):
            t = p["threshold"]
            op = operating_point(sc, ys, p["target_sensitivity"])
            want_t = given[(name, p["target_sensitivity"])] if given else (op[0] if op else None)
            close(t, want_t, f"{name} threshold at {p['target_sensitivity']}", 1e-6)
            if t is None:
                continue
            # The threshold is one of the study scores, which ich-eval compared at full precision:
            # take it at full precision (study_thresholds.csv), and as predictions.csv rounds the
            # scores to 6 significant digits (up to 5e-6 relative), a score within that of it reaches it.
            t_exact = exact.get((name, round(p["target_sensitivity"], 9)), t)
            close(t_exact, t, f"{name} threshold: study_thresholds.csv against the JSON", 1e-6)
            at = t_exact * (1 - 1e-5)
            tp = sum(1 for s, y in zip(sc, ys) if y and s >= at)
            fp = sum(1 for s, y in zip(sc, ys) if not y and s >= at)
            tn = sum(1 for s, y in zip(sc, ys) if not y and s < at)
            fn = sum(1 for s, y in zip(sc, ys) if y and s < at)
            if (p["tp"], p["fp"], p["tn"], p["fn"]) != (tp, fp, tn, fn):
                fail(f"{name} at {t}: counts {p['tp'], p['fp'], p['tn'], p['fn']}, recomputed {(tp, fp, tn, fn)}")
            se, sp = ratio(tp, tp + fn), ratio(tn, tn + fp)
            for what, v in (("sensitivity", se), ("specificity", sp), ("ppv", ratio(tp, tp + fp)),
                            ("npv", ratio(tn, tn + fn))):
                close(p[what], v, f"{name} {what}")
                lo, hi = p[what + "_ci"]
                if v is not None and lo is not None and not (lo - 1e-6 <= v <= hi + 1e-6):
                    fail(f"{name} {what} {v} outside its interval [{lo}, {hi}]")
                cell = page.cells.get(f"{name}.{i}.{what}")
                if cell is None or (cell == "null") != (p[what] is None) or (
                        cell != "null" and abs(float(cell) - p[what]) > 5e-7):
                    fail(f"report.html {name}.{i}.{what} = {cell}, study_metrics.json {p[what]}")
            if prev is not None and se is not None and sp is not None:
                d1 = se * prev + (1 - sp) * (1 - prev)
                close(p["ppv_at_prevalence"], se * prev / d1 if d1 else None, f"{name} PPV at prevalence")
        if (L["thresholds_chosen_on"] == "this data") == bool(given):
            fail(f"{name}: thresholds_chosen_on '{L['thresholds_chosen_on']}' with{'out' if not given else ''} --thresholds")
    print(f"study_check: {len(studies)} studies, {len(LABELS)} labels, "
          f"{sum(len(m['labels'][n]['operating_points']) for n in LABELS)} operating points recomputed")


main()
