#!/usr/bin/env python3
# ich-serve against a real PACS: Orthanc (Debian's), DCMTK's storescu and
# pynetdicom as senders, dciodvfy (dicom3tools) as the judge of what we
# write; everything on loopback, started and stopped here.
#   serve_e2e.py BIN WORK   (run by the venv's python: pynetdicom + Debian's pydicom)
#
# 1. storescu sends a phantom study: the SR, the KOS and the key images appear
#    in Orthanc in the same study; highdicom reads the SR as a TID 1500
#    Measurement Report whose probabilities equal ich-predict's on the same
#    files (with the series model); the KOS names the key slices and images;
#    dciodvfy finds no error in them; dsrdump prints the tree.
# 2. kill -9 while a study is arriving, restart, the sender sends again:
#    one result, with every instance.
# 3. Orthanc down while results are due: retried with backoff and reported;
#    kill -9 while retrying, restart, Orthanc back: delivered once.
#    The same with a kill in the middle of an association (a slow storescp
#    as destination): resent under the same UIDs.
# 4. 10 studies from 3 concurrent storescu: 10 results; latency per study.
# 5. One association with a study, a truncated instance and a non-DICOM
#    payload (pynetdicom sends files raw): both refused with 0xC000, the
#    study processed, both named in the SR and results.jsonl.
# 6. An Enhanced CT (one multi-frame instance): key slices by frame.
# 7. --max-pending: a new association is rejected (transient, local limit
#    exceeded), not dropped; a busy port and a bad checkpoint are one line.
import calendar
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pydicom  # noqa: E402
from pydicom.filewriter import write_file_meta_info  # noqa: E402
from serve_util import fail, free_port, phantom_studies, procs, run, wait_for  # noqa: E402

BIN, WORK = sys.argv[1], sys.argv[2]
CT = "1.2.840.10008.5.1.4.1.1.2"
LABELS = ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural", "any"]


# ---------------------------------------------------------------- data
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
t0 = time.time()
run(f"{BIN}/ich-phantom", "--difficulty", "easy", "--out", "ph", "--patients", "15", "--slices-per-series", "8",
    "--size", "96", "--seed", "21")
run(f"{BIN}/ich-window", "--input", "ph/dicom", "--out", "img")
run(f"{BIN}/ich-split", "--labels", "ph/labels.csv", "--meta", "img/meta.csv", "--out", "split")
run(f"{BIN}/ich-train", "--train", "split/train.csv", "--valid", "split/valid.csv", "--images", "img", "--arch",
    "resnext_mini", "--size", "64", "--batch", "8", "--lr", "1e-3", "--device", "cpu", "--seed", "3", "--epochs", "1",
    "--out", "run")
run(f"{BIN}/ich-embed", "--checkpoint", "run/best.ckpt", "--data", "split/train.csv", "--data", "split/valid.csv",
    "--images", "img", "--out", "emb", "--device", "cpu")
run(f"{BIN}/ich-train-seq", "--train", "split/train.csv", "--valid", "split/valid.csv", "--embeddings", "emb",
    "--hidden", "8", "--batch", "2", "--device", "cpu", "--seed", "4", "--epochs", "1", "--out", "seqrun")
# a model of each slice with its neighbours (ich-train --context 1) and a series model on its embeddings (8.)
run(f"{BIN}/ich-train", "--train", "split/train.csv", "--valid", "split/valid.csv", "--images", "img", "--arch",
    "resnext_mini", "--size", "64", "--batch", "8", "--lr", "1e-3", "--device", "cpu", "--seed", "5", "--epochs", "1",
    "--context", "1", "--out", "ctx")
run(f"{BIN}/ich-embed", "--checkpoint", "ctx/best.ckpt", "--data", "split/train.csv", "--data", "split/valid.csv",
    "--images", "img", "--out", "ctxemb", "--device", "cpu")
run(f"{BIN}/ich-train-seq", "--train", "split/train.csv", "--valid", "split/valid.csv", "--embeddings", "ctxemb",
    "--hidden", "8", "--batch", "2", "--device", "cpu", "--seed", "4", "--epochs", "1", "--out", "ctxseq")
print(f"models trained in {time.time() - t0:.1f} s")


# Each phantom study under studies/<k>/, with standard UIDs and the study
# attributes a scanner writes, as a PACS would send it.
paths, study_uid = phantom_studies("ph/dicom", "studies")
assert len(paths) == 15

# ---------------------------------------------------------------- Orthanc
http, dicom = free_port(), free_port()
os.makedirs("orthanc")
with open("orthanc/config.json", "w") as f:
    json.dump({"Name": "ich-test", "StorageDirectory": f"{WORK}/orthanc/db", "IndexDirectory": f"{WORK}/orthanc/db",
               "HttpPort": http, "DicomPort": dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
               "AuthenticationEnabled": False, "Plugins": [], "DicomCheckCalledAet": False}, f)
orthanc = None


def rest(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=10) as r:
        body = r.read()
        return json.loads(body) if r.headers.get_content_type() == "application/json" else body


def rest_post(path, data):
    req = urllib.request.Request(f"http://127.0.0.1:{http}{path}", data=data.encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def start_orthanc():
    global orthanc
    orthanc = subprocess.Popen(["Orthanc", "orthanc/config.json"], stdout=open("orthanc/log.txt", "a"),
                               stderr=subprocess.STDOUT)
    procs.append(orthanc)

    def up():
        try:
            return rest("/system")
        except OSError:
            return None
    wait_for("Orthanc", up, 60)


def stop_orthanc():
    orthanc.terminate()
    orthanc.wait(30)


def in_orthanc(uid):
    """Series of the study in Orthanc: modality -> list of instance ids."""
    hits = [h for h in rest_post("/tools/lookup", uid) if h["Type"] == "Study"]
    if not hits:
        return {}
    out = {}
    for s in rest(f"/studies/{hits[0]['ID']}/series"):
        out.setdefault(s["MainDicomTags"]["Modality"], []).extend(s["Instances"])
    return out


start_orthanc()

# ---------------------------------------------------------------- ich-serve
port = free_port()
serve = None


def start_serve(*extra, work="serve", port_=None, stable="2", dest=None,
                model=("--checkpoint", "run/best.ckpt", "--sequence", "seqrun/best.ckpt")):
    p = subprocess.Popen([f"{BIN}/ich-serve", "--aet", "ICH", "--port", str(port_ or port), *model,
                          "--work", work, "--dest-aet", "ORTHANC",
                          "--dest-host", "127.0.0.1", "--dest-port", str(dest or dicom), "--stable-seconds", stable,
                          "--retry-max-seconds", "2", "--device", "cpu", "--min-free-mb", "1",
                          # the senders of this test, from this host only (the node admits nobody by default)
                          "--allow", "STORESCU@127.0.0.1", "--allow", "ECHOSCU@127.0.0.1", "--allow",
                          "PYNETDICOM@127.0.0.1", *extra],
                         stdout=subprocess.DEVNULL, stderr=open(f"{work}.log", "a"))
    procs.append(p)

    def answers():
        if p.poll() is not None:
            fail(f"ich-serve exited {p.returncode}: {open(work + '.log').read()[-1000:]}")
        return subprocess.run(["echoscu", "-aec", "ICH", "127.0.0.1", str(port_ or port)],
                              capture_output=True).returncode == 0
    wait_for("ich-serve to answer C-ECHO", answers, 60)
    return p


def results(work="serve"):
    if not os.path.exists(f"{work}/results.jsonl"):
        return []
    return [json.loads(line) for line in open(f"{work}/results.jsonl")]


def result_of(uid, work="serve"):
    return [r for r in results(work) if r.get("study_uid") == uid]


def storescu(files, *flags):
    return subprocess.run(["storescu", "-aec", "ICH", *flags, "127.0.0.1", str(port), *files], capture_output=True,
                          text=True)


serve = start_serve()

# 1. One study: SR and key images in Orthanc; the SR's numbers are ich-predict's.
r = storescu(paths[0])
if r.returncode != 0:
    fail(f"storescu: {r.stderr}")
line = wait_for("study 0's result", lambda: result_of(study_uid[0]))[0]
got = wait_for("study 0 in Orthanc", lambda: (lambda s: s if "SR" in s and "KO" in s and len(s.get("OT", [])) == 3
                                               else None)(in_orthanc(study_uid[0])), 30)
if len(got["SR"]) != 1:
    fail(f"study 0: {len(got['SR'])} SR instances in Orthanc, expected 1")
sr_bytes = rest(f"/instances/{got['SR'][0]}/file")
open("sr.dcm", "wb").write(sr_bytes)
for k, i in enumerate(got["OT"]):
    open(f"key_{k}.dcm", "wb").write(rest(f"/instances/{i}/file"))
sr = pydicom.dcmread("sr.dcm")
if sr.StudyInstanceUID != study_uid[0]:
    fail("the SR is not in the original study")
if sr.SOPClassUID != "1.2.840.10008.5.1.4.1.1.88.33" or sr.VerificationFlag != "UNVERIFIED":
    fail(f"SR: class {sr.SOPClassUID}, verification {sr.VerificationFlag}: expected Comprehensive SR, UNVERIFIED")
if "NOT FOR DIAGNOSTIC USE" not in sr.SeriesDescription:
    fail("SR: the series description does not say it is not for diagnostic use")
eq = sr.ContributingEquipmentSequence[0]
if eq.Manufacturer != "ich" or eq.PurposeOfReferenceCodeSequence[0].CodeValue != "109102":
    fail("SR: Contributing Equipment does not name ich as processing equipment")
if sr.ContentSequence is None or sr.ConceptNameCodeSequence[0].CodeValue != "126000" or sr.ValueType != "CONTAINER":
    fail("SR: the root is not the Imaging Measurement Report CONTAINER")


def walk(items):
    for it in items:
        yield it
        if "ContentSequence" in it:
            yield from walk(it.ContentSequence)


# The SR as highdicom reads a TID 1500 Measurement Report: one measurement group per label, each with its
# tracking identifier and UID, finding, finding site, probability (ich-predict's highest over the study,
# inferred from a slice of the study), the threshold and the finding present or absent at it; the key
# slices as the source of the "any" group.
import highdicom as hd  # noqa: E402
report = hd.sr.srread("sr.dcm").content
if not isinstance(report, hd.sr.MeasurementReport):
    fail(f"SR: highdicom reads {type(report).__name__}, not a TID 1500 Measurement Report")
FINDINGS = {"EDH": 0, "274100004": 1, "IVH": 2, "21454007": 3, "SDH": 4, "1386000": 5}
study_sops = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in paths[0]}
nums, found, tracking, sources = {}, {}, set(), []
for g in report.get_image_measurement_groups():
    k = FINDINGS[g.finding_type.value]
    if not g.tracking_identifier.startswith("ICH AI: ") or g.tracking_uid in tracking:
        fail(f"SR: group {LABELS[k]}: tracking identifier {g.tracking_identifier!r}, UID {g.tracking_uid}")
    tracking.add(g.tracking_uid)
    if [s.value.value for s in g.finding_sites] != ["128319008"]:
        fail(f"SR: group {LABELS[k]}: finding site {[s.value.value for s in g.finding_sites]}, expected intracranial structure")
    ms = {m.name.value: m for m in g.get_measurements()}
    p = ms["122157"]
    if p.unit.value != "1" or len(p.referenced_images) != 1 or p.referenced_images[0].referenced_sop_instance_uid not in study_sops:
        fail(f"SR: group {LABELS[k]}: the probability's unit {p.unit.value} or its source slice is wrong")
    nums[k] = p.value
    if float(ms["THRESHOLD"].value) != 0.5:
        fail(f"SR: group {LABELS[k]}: threshold {ms['THRESHOLD'].value}, expected 0.5")
    qe = g.get_qualitative_evaluations()
    if len(qe) != 1 or qe[0].name.value != g.finding_type.value:
        fail(f"SR: group {LABELS[k]}: {len(qe)} qualitative evaluations of its finding")
    found[k] = qe[0].value.value
    if k == 5:
        sources = [s.referenced_sop_instance_uid for s in g.source_images]
if sorted(nums) != list(range(6)):
    fail(f"SR: measurement groups for {sorted(nums)}, expected all six labels")
if sorted(sources) != sorted(k["source_sop_uid"] for k in line["key_images"]) or len(sources) != 3:
    fail(f"SR: the any group's sources {sources} are not the 3 key slices")
run(f"{BIN}/ich-predict", "--checkpoint", "run/best.ckpt", "--sequence", "seqrun/best.ckpt", "--input", "studies/0",
    "--out", "predict0.csv", "--device", "cpu")


def highest_per_label(submission):
    """Each label's highest probability in an ich-predict CSV, as written (text)."""
    best = [None] * 6
    for row in list(open(submission))[1:]:
        ident, value = row.strip().split(",")
        k = LABELS.index(ident.rsplit("_", 1)[1])
        if best[k] is None or float(value) > float(best[k]):
            best[k] = value
    return best


best = highest_per_label("predict0.csv")
for k in range(6):
    if float(nums[k]) != float(best[k]):
        fail(f"SR: {LABELS[k]} {nums[k]}, but ich-predict's highest on the same files is {best[k]}")
    if str(line["probabilities"][LABELS[k]]) != best[k] and float(line["probabilities"][LABELS[k]]) != float(best[k]):
        fail(f"results.jsonl: {LABELS[k]} {line['probabilities'][LABELS[k]]} against ich-predict's {best[k]}")
    expect = "52101004" if float(best[k]) >= 0.5 else "2667000"
    if found[k] != expect:
        fail(f"SR: {LABELS[k]} evaluated {found[k]}, expected {expect} for p {best[k]} at threshold 0.5")
finding = found[5]
# The Key Object Selection document: "Of Interest", the key slices and the key images, all in its evidence.
kos = pydicom.dcmread(__import__("io").BytesIO(rest(f"/instances/{got['KO'][0]}/file")))
kos.save_as("kos.dcm")
want = {k["source_sop_uid"] for k in line["key_images"]} | {k["sop_uid"] for k in line["key_images"]}
refs = {it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for it in kos.ContentSequence if it.ValueType == "IMAGE"}
evidence = {i.ReferencedSOPInstanceUID for st in kos.CurrentRequestedProcedureEvidenceSequence
            for se in st.ReferencedSeriesSequence for i in se.ReferencedSOPSequence}
if (kos.SOPClassUID != "1.2.840.10008.5.1.4.1.1.88.59" or kos.Modality != "KO" or kos.StudyInstanceUID != study_uid[0]
        or kos.ConceptNameCodeSequence[0].CodeValue != "113000" or refs != want or evidence != want
        or kos.SOPInstanceUID != line["kos_sop_uid"]):
    fail(f"KOS: class {kos.SOPClassUID}, title {kos.ConceptNameCodeSequence[0].CodeValue}, references {sorted(refs)}, "
         f"evidence {sorted(evidence)}: expected 'Of Interest' naming the 3 key slices and 3 key images")
tree = subprocess.run(["dsrdump", "sr.dcm"], capture_output=True, text=True)
if tree.returncode != 0 or "Imaging Measurement Report" not in tree.stdout or tree.stdout.count("Measurement Group") != 6:
    fail(f"dsrdump sr.dcm: exit {tree.returncode}, {tree.stderr[-500:]}")
for f in ["sr.dcm", "kos.dcm"] + [f"key_{k}.dcm" for k in range(3)]:
    v = subprocess.run(["dciodvfy", f], capture_output=True, text=True)
    errors = [l for l in (v.stdout + v.stderr).splitlines() if l.startswith("Error")]
    if errors:
        fail(f"dciodvfy {f}: " + "; ".join(errors[:5]))
key = pydicom.dcmread("key_0.dcm")
if key.StudyInstanceUID != study_uid[0] or key.PhotometricInterpretation != "RGB" or key.BurnedInAnnotation != "YES":
    fail("key image: not an RGB Secondary Capture in the study with burned-in annotation")
for stage in ["receiving", "quiet", "queued", "predict", "key_images", "write"]:
    if stage not in line["timings_s"]:
        fail(f"results.jsonl: no timing for {stage}")
print(f"1. study 0: TID 1500 SR (6 groups, read by highdicom), KOS and 3 key images in Orthanc, p(any) {nums[5]} = "
      f"ich-predict's, dciodvfy clean, "
      f"latency {line['sent']['latency_s']} s")

# 2. kill -9 while a study arrives; the sender sends it again after the restart.
r = storescu(paths[1][:4])
serve.send_signal(signal.SIGKILL)
serve.wait()
serve = start_serve()
r = storescu(paths[1])
if r.returncode != 0:
    fail(f"storescu after the restart: {r.stderr}")
line = wait_for("study 1's result", lambda: result_of(study_uid[1]))
time.sleep(3)
if len(result_of(study_uid[1])) != 1 or line[0]["instances"] != 8:
    fail(f"study 1: {len(result_of(study_uid[1]))} results with {line[0]['instances']} instances, expected 1 with 8")
print("2. kill -9 while arriving: one result with all 8 instances")

# 3. Orthanc down while results are due: retried; kill -9 while retrying; delivered once.
stop_orthanc()
storescu(paths[2])
state = f"serve/studies/{study_uid[2]}/state"
wait_for("a failed send of study 2", lambda: os.path.exists(state) and any(
    l.startswith("send_attempts ") and int(l.split()[1]) >= 2 for l in open(state)), 60)
if "sending failed" not in open("serve.log").read():
    fail("a destination that is down is not reported")
serve.send_signal(signal.SIGKILL)
serve.wait()
serve = start_serve()
time.sleep(1)
start_orthanc()
wait_for("study 2's result after Orthanc came back", lambda: result_of(study_uid[2]), 60)
time.sleep(3)
s2 = in_orthanc(study_uid[2])
if (len(result_of(study_uid[2])) != 1 or len(s2.get("SR", [])) != 1 or len(s2.get("OT", [])) != 3
        or len(s2.get("KO", [])) != 1):
    fail(f"study 2: {len(result_of(study_uid[2]))} results, Orthanc has {s2}: expected exactly one SR, one KOS, 3 images")
print(f"3. Orthanc down, kill -9 while retrying: delivered once after {result_of(study_uid[2])[0]['sent']['attempts']} attempts")

# 4. 10 studies from 3 concurrent storescu.
batch = list(range(3, 13))
groups = [batch[0::3], batch[1::3], batch[2::3]]
senders = [subprocess.Popen(["storescu", "-aec", "ICH", "127.0.0.1", str(port)] + [f for k in g for f in paths[k]],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for g in groups]
for s in senders:
    if s.wait() != 0:
        fail(f"concurrent storescu: {s.stderr.read()}")
wait_for("10 results", lambda: all(result_of(study_uid[k]) for k in batch), 180)
print("4. 10 studies from 3 concurrent storescu; last instance received -> SR stored in Orthanc:")
for k in batch:
    res = result_of(study_uid[k])[0]
    sr_id = in_orthanc(study_uid[k])["SR"][0]
    # Orthanc's reception time of the SR (its clock, whole seconds, UTC on
    # a machine set to UTC) less the last instance's arrival at ich-serve
    stored = rest(f"/instances/{sr_id}/metadata/ReceptionDate").decode()
    last_ms = [int(l.split()[1]) for l in open(f"serve/studies/{study_uid[k]}/state") if l.startswith("last_ms ")][0]
    orthanc_s = calendar.timegm(time.strptime(stored, "%Y%m%dT%H%M%S")) - last_ms / 1000
    print(f"   study {k}: {res['sent']['latency_s']:.2f} s to the SR's C-STORE response (ich-serve's clock), "
          f"{orthanc_s:.1f} s +- 1 to Orthanc's reception; predict {res['timings_s']['predict']:.2f} s, "
          f"queued {res['timings_s']['queued']:.2f} s")

# 5. A truncated instance and a non-DICOM payload in one association with a study.
good = paths[13]
ds = pydicom.dcmread(good[0])
ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "2.25.99001"
ds.save_as("whole.dcm", write_like_original=False)
data = open("whole.dcm", "rb").read()
open("truncated.dcm", "wb").write(data[:len(data) * 6 // 10])
meta = pydicom.dataset.FileMetaDataset()
meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT, "2.25.99002"
meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
with open("not_dicom.dcm", "wb") as f:
    f.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(f, meta, enforce_standard=True)
    f.write(b"%PDF-1.4 a report that is not a DICOM data set\n" * 40)
from pynetdicom import AE, _config  # noqa: E402
_config.STORE_SEND_CHUNKED_DATASET = True  # the files' bytes as they are, not re-encoded
ae = AE(ae_title="PYNETDICOM")
ae.add_requested_context(CT, ["1.2.840.10008.1.2.1"])
assoc = ae.associate("127.0.0.1", port, ae_title="ICH")
if not assoc.is_established:
    fail("pynetdicom could not associate")
statuses = [assoc.send_c_store(os.path.abspath(f)).Status for f in good + ["truncated.dcm", "not_dicom.dcm"]]
assoc.release()
if statuses[:-2] != [0] * len(good) or statuses[-2:] != [0xC000, 0xC000]:
    fail(f"C-STORE statuses {[hex(s) for s in statuses]}: expected success for the study, 0xC000 for the bad two")
res = wait_for("study 13's result", lambda: result_of(study_uid[13]))[0]
bad = [u for u in res["unreadable"] if "2.25.99001" in u or "2.25.99002" in u]
if len(bad) != 2:
    fail(f"results.jsonl does not name both bad instances: {res['unreadable']}")
sr13 = pydicom.dcmread(__import__("io").BytesIO(rest(f"/instances/{wait_for('SR 13', lambda: in_orthanc(study_uid[13]).get('SR'))[0]}/file")))
texts = [it.TextValue for it in walk(sr13.ContentSequence) if it.ValueType == "TEXT"]
if sum(("2.25.99001" in t) + ("2.25.99002" in t) for t in texts) != 2:
    fail("the SR does not name both bad instances")
print(f"5. truncated + non-DICOM: 0xC000 each, study processed ({res['slices']} slices), both in the SR and results.jsonl")

# 6. Enhanced CT: study 14's slices as one multi-frame instance (per-frame
#    position and rescale, PS3.3 C.7.6.16): one result of 8 slices whose key
#    slices name their frames; ich-predict gives the same numbers.
frames = sorted((pydicom.dcmread(f) for f in paths[14]), key=lambda d: float(d.ImagePositionPatient[2]))
enh = pydicom.Dataset()
enh.file_meta = pydicom.dataset.FileMetaDataset()
enh.file_meta.MediaStorageSOPClassUID = enh.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
enh.file_meta.MediaStorageSOPInstanceUID = enh.SOPInstanceUID = "2.25.99003"
enh.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
enh.is_implicit_VR, enh.is_little_endian = False, True
for kw in ["StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName", "StudyDate", "StudyTime", "StudyID",
           "AccessionNumber", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
           "BitsStored", "HighBit", "PixelRepresentation"]:
    setattr(enh, kw, getattr(frames[0], kw))
enh.Modality, enh.NumberOfFrames = "CT", len(frames)
shared, pm, po = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
pm.PixelSpacing = frames[0].PixelSpacing
po.ImageOrientationPatient = frames[0].ImageOrientationPatient
shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [pm], [po]
enh.SharedFunctionalGroupsSequence = [shared]
per = []
for d in frames:
    item, pos, pvt = pydicom.Dataset(), pydicom.Dataset(), pydicom.Dataset()
    pos.ImagePositionPatient = d.ImagePositionPatient
    pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = d.RescaleIntercept, d.RescaleSlope, "HU"
    item.PlanePositionSequence, item.PixelValueTransformationSequence = [pos], [pvt]
    per.append(item)
enh.PerFrameFunctionalGroupsSequence = per
enh.PixelData = b"".join(d.PixelData for d in frames)
os.makedirs("enhanced")
enh.save_as("enhanced/enhanced.dcm", write_like_original=False)
r = storescu(["enhanced/enhanced.dcm"])
if r.returncode != 0:
    fail(f"storescu of an Enhanced CT: {r.stderr}")
res = wait_for("the Enhanced CT study's result", lambda: result_of(study_uid[14]))[0]
if res["instances"] != 1 or res["slices"] != 8 or not all(k["frame"] >= 1 for k in res["key_images"]):
    fail(f"Enhanced CT: {res['instances']} instances, {res['slices']} slices, key frames "
         f"{[k['frame'] for k in res['key_images']]}: expected 1 instance of 8 frames, frames named")
run(f"{BIN}/ich-predict", "--checkpoint", "run/best.ckpt", "--sequence", "seqrun/best.ckpt", "--input", "enhanced",
    "--out", "predict_enhanced.csv", "--device", "cpu")
any_max = max((row.strip().split(",")[1] for row in list(open("predict_enhanced.csv"))[1:]
               if row.split(",")[0].endswith("_any")), key=float)
if str(res["probabilities"]["any"]) != any_max and float(res["probabilities"]["any"]) != float(any_max):
    fail(f"Enhanced CT: p(any) {res['probabilities']['any']} against ich-predict's {any_max}")
sr14 = pydicom.dcmread(__import__("io").BytesIO(rest(f"/instances/{wait_for('SR 14', lambda: in_orthanc(study_uid[14]).get('SR'))[0]}/file")))
framed = [it for it in walk(sr14.ContentSequence) if it.ValueType == "IMAGE" and
          it.ConceptNameCodeSequence[0].CodeValue == "260753009" and "ReferencedFrameNumber" in it.ReferencedSOPSequence[0]]
if len(framed) != 3:
    fail(f"Enhanced CT: {len(framed)} key slice references with a frame number, expected 3")
print(f"6. Enhanced CT (8 frames in one instance): one result, key slices by frame {[k['frame'] for k in res['key_images']]}")

# 3b. kill -9 in the middle of sending: a slow destination (DCMTK's storescp,
#     sleeping a second after each object, keeping every copy it gets) holds the
#     association open; the node is killed after the first object arrived.
#     After the restart it sends again, under the same UIDs: the destination
#     has exactly the study's five result objects (copies of the same UID are
#     what a PACS keeps once), and results.jsonl one line.
slow, port4 = free_port(), free_port()
os.makedirs("slowpacs")
storescp = subprocess.Popen(["storescp", "--sleep-after", "1", "+uf", "-od", "slowpacs", "-aet", "SLOW", str(slow)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
procs.append(storescp)
serve4 = start_serve(work="serve4", port_=port4, dest=slow)
subprocess.run(["storescu", "-aec", "ICH", "127.0.0.1", str(port4), *paths[0]], capture_output=True, check=True)
wait_for("the first object at the slow destination", lambda: os.listdir("slowpacs"), 60)
serve4.send_signal(signal.SIGKILL)
serve4.wait()
if result_of(study_uid[0], "serve4"):
    fail("3b: the kill came after the send finished; the slow destination did not hold it open")
serve4 = start_serve(work="serve4", port_=port4, dest=slow)
res4 = wait_for("3b's result after the restart", lambda: result_of(study_uid[0], "serve4"), 60)[0]
time.sleep(1)
got_uids = [pydicom.dcmread(f"slowpacs/{f}", stop_before_pixels=True).SOPInstanceUID for f in os.listdir("slowpacs")]
want = {res4["sr_sop_uid"], res4["kos_sop_uid"]} | {k["sop_uid"] for k in res4["key_images"]}
if set(got_uids) != want or len(result_of(study_uid[0], "serve4")) != 1:
    fail(f"3b: the destination got {sorted(set(got_uids))}, expected the result's {sorted(want)}, one results line")
serve4.send_signal(signal.SIGTERM)
serve4.wait(30)
storescp.terminate()
print(f"3b. kill -9 mid-association: {len(got_uids)} copies of the same {len(want)} objects, one result")

# 7. --max-pending, a busy port, a bad checkpoint.
port2 = free_port()
serve2 = start_serve("--max-pending", "1", work="serve2", port_=port2, stable="60")
r = subprocess.run(["storescu", "-aec", "ICH", "127.0.0.1", str(port2), *paths[0]], capture_output=True, text=True)
if r.returncode != 0:
    fail(f"first study to the --max-pending 1 node: {r.stderr}")
r = subprocess.run(["storescu", "-aec", "ICH", "127.0.0.1", str(port2), *paths[1]], capture_output=True, text=True)
if r.returncode == 0 or "association rejected" not in r.stderr.lower() or "local limit exceeded" not in r.stderr.lower():
    fail(f"--max-pending: the second study's association was not rejected (transient, local limit): {r.stderr}")
if "refused an association" not in open("serve2.log").read():
    fail("--max-pending: the refusal is not in ich-serve's log")
r = subprocess.run([f"{BIN}/ich-serve", "--port", str(port2), "--checkpoint", "run/best.ckpt", "--work", "serve3",
                    "--dest-aet", "X", "--dest-host", "127.0.0.1", "--dest-port", "1"], capture_output=True, text=True)
if r.returncode != 1 or "in use" not in r.stderr or len(r.stderr.strip().splitlines()) != 1:
    fail(f"busy port: exit {r.returncode}, {r.stderr!r}")
open("bad.ckpt", "wb").write(open("run/best.ckpt", "rb").read()[:1000])
r = subprocess.run([f"{BIN}/ich-serve", "--port", str(free_port()), "--checkpoint", "bad.ckpt", "--work", "serve3",
                    "--dest-aet", "X", "--dest-host", "127.0.0.1", "--dest-port", "1"], capture_output=True, text=True)
if r.returncode != 1 or "bad.ckpt" not in r.stderr:
    fail(f"truncated checkpoint: exit {r.returncode}, {r.stderr!r}")
with open("thin_thresholds.csv", "w") as f:  # an operating point a validation run could not reach: an empty threshold
    f.write("label,target_sensitivity,threshold\n" + "".join(f"{l},0.94999999999999996,{'' if l == 'epidural' else 0.4}\n"
                                                          for l in LABELS))
r = subprocess.run([f"{BIN}/ich-serve", "--port", str(free_port()), "--checkpoint", "run/best.ckpt", "--work", "serve3",
                    "--thresholds", "thin_thresholds.csv", "--dest-aet", "X", "--dest-host", "127.0.0.1", "--dest-port", "1",
                    "--device", "cpu"], capture_output=True, text=True)
if r.returncode != 1 or "epidural" not in r.stderr or len(r.stderr.strip().splitlines()) != 1:
    fail(f"--thresholds without epidural's: exit {r.returncode}, {r.stderr!r}")
print("7. --max-pending refuses with A-ASSOCIATE-RJ (transient, local limit exceeded); busy port, bad checkpoint and "
      "an operating point not reached: one line")

# 8. A --context checkpoint with its series model at the node: each slice's neighbours come from the
# study's headers, ordered by geometry, as ich-predict orders them; the result is ich-predict's on the
# same files (to float32 rounding: its batches hold other slices).
portc = free_port()
servec = start_serve(work="servectx", port_=portc, model=("--checkpoint", "ctx/best.ckpt", "--sequence",
                                                          "ctxseq/best.ckpt"))
r = subprocess.run(["storescu", "-aec", "ICH", "127.0.0.1", str(portc), *paths[3]], capture_output=True, text=True)
if r.returncode != 0:
    fail(f"storescu to the --context node: {r.stderr}")
linec = wait_for("study 3's result at the --context node", lambda: result_of(study_uid[3], "servectx"), 60)[0]
run(f"{BIN}/ich-predict", "--checkpoint", "ctx/best.ckpt", "--sequence", "ctxseq/best.ckpt", "--input", "studies/3",
    "--out", "predictctx.csv", "--device", "cpu", "--chunk", "3")
bestc = highest_per_label("predictctx.csv")
for k in range(6):
    if abs(float(linec["probabilities"][LABELS[k]]) - float(bestc[k])) > 2e-5:  # other batches: float32 rounding
        fail(f"--context node: {LABELS[k]} {linec['probabilities'][LABELS[k]]}, ich-predict's {bestc[k]}")
print(f"8. a --context 1 checkpoint with its series model at the node: p(any) {bestc[5]} = ich-predict's "
      "(in chunks of 3 files)")

serve2.send_signal(signal.SIGTERM)
serve.send_signal(signal.SIGTERM)
servec.send_signal(signal.SIGTERM)
for p in (serve, serve2, servec):
    try:
        if p.wait(30) != 0:
            fail(f"ich-serve exited {p.returncode} on SIGTERM")
    except subprocess.TimeoutExpired:
        fail("ich-serve did not stop within 30 s of SIGTERM")
stop_orthanc()
print(f"serve e2e passed in {time.time() - t0:.0f} s")
