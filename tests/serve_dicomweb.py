#!/usr/bin/env python3
# ich-serve over DICOMweb, against Orthanc with its DICOMweb plugin
# (Debian's orthanc-dicomweb), on loopback, started and stopped here.
#   serve_dicomweb.py BIN WORK [SERVE_BIN]   (run by the test venv's python;
#   SERVE_BIN: another build's ich-serve, the ThreadSanitizer one in CI)
#
# 1. Orthanc sends a study to the node with STOW-RS (its DICOMweb client,
#    /dicom-web/servers/ich/stow): the node answers 200, processes the study
#    as one C-STORE association's, and its results (SR, KOS, key images)
#    reach Orthanc over STOW-RS (basic authentication from a file) and the
#    DICOM destination (a storescp) over C-STORE; QIDO-RS finds them in the
#    study.
# 2. Bad requests get PS3.18's answers and change nothing: another media
#    type 415, a body that is not multipart 400, a part that is not DICOM
#    409 with its Failed SOP Sequence (0xC000), the node's own SR 409 (0x0122,
#    and the study stays as it was), a peer the allow-list does not name 403
#    (a node without STOW@127.0.0.1).
# 3. The archive down while results are due: retried and reported; kill -9
#    while retrying, restart, the archive back: delivered once (one SR, one
#    KOS, three key images in Orthanc, one results.jsonl line).
# 4. FHIR: the node's --fhir server is down from the start: its Bundles are
#    retried and reported while the DICOM results go out (1., 3.); kill -9
#    while retrying (3.); the server up: each study's Bundle arrives once, with
#    the bearer token from --fhir-auth's file, and validates against
#    fhir.resources' R4 models: a preliminary DiagnosticReport on the study
#    (its Study Instance UID) with six Observations whose probabilities are
#    the results'.
# The node runs with per-label operating points from a validation run's
# study_thresholds.csv (--thresholds, --sensitivity 0.95): results.jsonl,
# the SR's groups and the Observations carry each label's.
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import os
import threading
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pydicom  # noqa: E402
from serve_util import fail, free_port, phantom_studies, procs, small_model, wait_for  # noqa: E402

BIN, WORK = sys.argv[1], sys.argv[2]
SERVE_BIN = sys.argv[3] if len(sys.argv) > 3 else BIN
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
t0 = time.time()
small_model(BIN, patients=4)
paths, study_uid = phantom_studies("ph/dicom", "studies")

# ---------------------------------------------------------------- Orthanc, DICOMweb, basic auth
http, dicom, node_http, node_port, sink_port, fhir_port = (free_port(), free_port(), free_port(), free_port(),
                                                         free_port(), free_port())
os.makedirs("orthanc")
with open("orthanc/config.json", "w") as f:
    json.dump({"Name": "ich-dicomweb", "StorageDirectory": f"{WORK}/orthanc/db", "IndexDirectory": f"{WORK}/orthanc/db",
               "HttpPort": http, "DicomPort": dicom, "DicomAet": "ORTHANC", "RemoteAccessAllowed": False,
               "AuthenticationEnabled": True, "RegisteredUsers": {"ich": "s3cret"},
               "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
               "DicomWeb": {"Enable": True, "Root": "/dicom-web/",
                            "Servers": {"ich": [f"http://127.0.0.1:{node_http}/"]}}}, f)
AUTH = "Basic " + __import__("base64").b64encode(b"ich:s3cret").decode()


def request(url, data=None, headers=None, method=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError):  # not listening (yet)
        return 0, b""


def orthanc(path, data=None, method=None):
    status, body = request(f"http://127.0.0.1:{http}{path}", data, {"Authorization": AUTH}, method)
    if status >= 300:
        fail(f"Orthanc {path}: HTTP {status} {body[:300]!r}")
    return json.loads(body) if body[:1] in (b"{", b"[") else body


orthanc_proc = None


def start_orthanc():
    global orthanc_proc
    orthanc_proc = subprocess.Popen(["Orthanc", "orthanc/config.json"], stdout=open("orthanc/log.txt", "a"),
                                    stderr=subprocess.STDOUT)
    procs.append(orthanc_proc)
    wait_for("Orthanc", lambda: request(f"http://127.0.0.1:{http}/system", headers={"Authorization": AUTH})[0] == 200, 60)


def qido_modalities(uid):
    """Modality -> instances of the study's series, through QIDO-RS."""
    status, body = request(f"http://127.0.0.1:{http}/dicom-web/studies/{uid}/series", headers={"Authorization": AUTH,
                                                                                              "Accept": "application/dicom+json"})
    if status == 204 or (status == 200 and not body.strip()):
        return {}
    if status != 200:
        return {}
    out = {}
    for s in json.loads(body):
        out[s["00080060"]["Value"][0]] = out.get(s["00080060"]["Value"][0], 0) + int(s.get("00201209", {}).get("Value", [0])[0])
    return out


start_orthanc()

# ---------------------------------------------------------------- the DICOM destination and the node
os.makedirs("sink")
sink = subprocess.Popen(["storescp", "+uf", "-od", "sink", "-aet", "SINK", str(sink_port)], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
procs.append(sink)
with open("stow.auth", "w") as f:
    f.write("basic ich:s3cret\n")
os.chmod("stow.auth", 0o600)
# per-label operating points, as ich-eval --studies writes them (study_thresholds.csv), at sensitivity 0.95
THRESHOLDS = {"epidural": 0.21, "intraparenchymal": 0.32, "intraventricular": 0.43, "subarachnoid": 0.54,
              "subdural": 0.65, "any": 0.46}
with open("study_thresholds.csv", "w") as f:
    f.write("label,target_sensitivity,threshold\n")
    for label, t in THRESHOLDS.items():
        f.write(f"{label},0.90000000000000002,0.05\n{label},0.94999999999999996,{t!r}\n")
with open("fhir.auth", "w") as f:
    f.write("bearer t0ken-for-the-ehr\n")
os.chmod("fhir.auth", 0o600)


def start_node(work="node", allow_stow=True, port=node_port, http_port=node_http):
    allow = ["--allow", "ECHOSCU@127.0.0.1"] + (["--allow", "STOW@127.0.0.1"] if allow_stow else [])
    p = subprocess.Popen([f"{SERVE_BIN}/ich-serve", "--aet", "ICH", "--port", str(port), "--checkpoint", "run/best.ckpt",
                          "--work", work, "--dest-aet", "SINK", "--dest-host", "127.0.0.1", "--dest-port", str(sink_port),
                          "--dest-stow", f"http://127.0.0.1:{http}/dicom-web/studies", "--dest-stow-auth", "stow.auth",
                          "--http", f"127.0.0.1:{http_port}", "--stow", "--stable-seconds", "2", "--retry-max-seconds", "2",
                          "--fhir", f"http://127.0.0.1:{fhir_port}/fhir", "--fhir-auth", "fhir.auth",
                          "--thresholds", "study_thresholds.csv", "--sensitivity", "0.95",
                          "--device", "cpu", "--min-free-mb", "1", *allow],
                         stdout=subprocess.DEVNULL, stderr=open(f"{work}.log", "a"))
    procs.append(p)

    def up():
        if p.poll() is not None:
            fail(f"ich-serve exited {p.returncode}: {open(work + '.log').read()[-1500:]}")
        return request(f"http://127.0.0.1:{http_port}/healthz")[0] == 200
    wait_for("ich-serve's HTTP side", up, 60)
    return p


def results(work="node"):
    if not os.path.exists(f"{work}/results.jsonl"):
        return []
    return [json.loads(line) for line in open(f"{work}/results.jsonl")]


def result_of(uid, work="node"):
    return [r for r in results(work) if r.get("study_uid") == uid]


node = start_node()

# 1. Orthanc -> node over STOW-RS; the results back over STOW-RS (and C-STORE to the sink).
ids = [orthanc("/instances", open(f, "rb").read(), "POST")["ID"] for f in paths[0]]
study_id = orthanc(f"/instances/{ids[0]}/study")["ID"]
job = orthanc("/dicom-web/servers/ich/stow", json.dumps({"Resources": [study_id], "Synchronous": True}).encode(), "POST")
line = wait_for("study 0's result", lambda: result_of(study_uid[0]), 60)[0]
if line["instances"] != len(paths[0]) or line["calling_aet"] != "STOW":
    fail(f"study 0 over STOW-RS: {line['instances']} instances from {line['calling_aet']}, expected {len(paths[0])} from STOW")
got = wait_for("study 0's results in Orthanc (QIDO-RS)",
               lambda: (lambda m: m if m.get("SR") == 1 and m.get("KO") == 1 and m.get("OT") == 3 else None)(
                   qido_modalities(study_uid[0])), 30)
sunk = {pydicom.dcmread(f"sink/{f}", stop_before_pixels=True).SOPInstanceUID for f in os.listdir("sink")}
want = {line["sr_sop_uid"], line["kos_sop_uid"]} | {k["sop_uid"] for k in line["key_images"]}
if sunk != want:
    fail(f"the DICOM destination got {sorted(sunk)}, expected the results {sorted(want)}")
if "STOW-RS http://127.0.0.1" not in line["sent"]["destination"]:
    fail(f"results.jsonl: destination {line['sent']['destination']} does not name the STOW-RS archive")
if {k: float(v) for k, v in line["thresholds"].items()} != THRESHOLDS or "sensitivity 0.95" not in line["operating_point"]:
    fail(f"results.jsonl: thresholds {line['thresholds']} ({line['operating_point']}), expected the file's at 0.95")
sr = pydicom.dcmread(f"node/studies/{study_uid[0]}/round1/results/sr.dcm")
groups = sr.ContentSequence[[i.ConceptNameCodeSequence[0].CodeValue for i in sr.ContentSequence].index("126010")].ContentSequence
sr_thresholds = sorted(float(i.MeasuredValueSequence[0].NumericValue) for g in groups for i in g.ContentSequence
                       if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeValue == "THRESHOLD")
if sr_thresholds != sorted(THRESHOLDS.values()):
    fail(f"SR: thresholds {sr_thresholds}, expected each label's from study_thresholds.csv")
state0 = f"node/studies/{study_uid[0]}/state"
wait_for("a failed FHIR post of study 0 (no FHIR server yet)", lambda: any(
    l.startswith("fhir_attempts ") and int(l.split()[1]) >= 1 for l in open(state0)), 30)
# The node logs a failure before it records the attempt: both are there now.
if "FHIR http://127.0.0.1" not in open(state0).read():
    fail(f"study 0: the FHIR failure is not in its state: {open(state0).read()[-600:]!r}")
if "FHIR failed" not in open("node.log").read():
    fail(f"study 0: the FHIR failure recorded in its state is not in the log: {open('node.log').read()[-600:]!r}")
print(f"1. Orthanc -> node over STOW-RS ({len(paths[0])} instances); results back over STOW-RS {got} "
      f"and C-STORE ({len(sunk)} objects)", flush=True)

# 2. Bad requests.
dcm = open(paths[1][0], "rb").read()
stow = f"http://127.0.0.1:{node_http}/studies"
status, _ = request(stow, b"{}", {"Content-Type": "application/json"}, "POST")
if status != 415:
    fail(f"STOW-RS with application/json: HTTP {status}, expected 415")
status, _ = request(stow, b"garbage", {"Content-Type": "multipart/related; type=\"application/dicom\"; boundary=x"}, "POST")
if status != 400:
    fail(f"STOW-RS with a body that is not multipart: HTTP {status}, expected 400")
body = b"--b\r\nContent-Type: application/dicom\r\n\r\n%PDF not dicom\r\n--b--\r\n"
status, answer = request(stow, body, {"Content-Type": "multipart/related; type=\"application/dicom\"; boundary=b"}, "POST")
failed = json.loads(answer).get("00081198", {}).get("Value", [])
if status != 409 or len(failed) != 1 or failed[0]["00081197"]["Value"][0] != 0xC000:
    fail(f"STOW-RS of a part that is not DICOM: HTTP {status}, {answer[:300]!r}: expected 409, one failure 0xC000")
sr = open(f"node/studies/{study_uid[0]}/round1/results/sr.dcm", "rb").read()  # the node's own SR coming back
status, answer = request(stow, b"--b\r\nContent-Type: application/dicom\r\n\r\n" + sr + b"\r\n--b--\r\n",
                         {"Content-Type": "multipart/related; type=\"application/dicom\"; boundary=b"}, "POST")
failed = json.loads(answer).get("00081198", {}).get("Value", [])
if status != 409 or len(failed) != 1 or failed[0]["00081197"]["Value"][0] != 0x0122:
    fail(f"STOW-RS of the node's own SR: HTTP {status}, {answer[:300]!r}: expected 409, SOP class not supported (0x0122)")
if "phase sent" not in open(f"node/studies/{study_uid[0]}/state").read():
    fail("study 0 was reopened by its own SR coming back over STOW-RS")
body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + dcm + b"\r\n--b--\r\n"
other_http = free_port()
closed = start_node(work="closed", allow_stow=False, port=free_port(), http_port=other_http)
status, _ = request(f"http://127.0.0.1:{other_http}/studies", body,
                    {"Content-Type": "multipart/related; type=\"application/dicom\"; boundary=b"}, "POST")
closed.send_signal(signal.SIGTERM)
closed.wait(30)
if status != 403 or os.path.exists("closed/studies") and os.listdir("closed/studies"):
    fail(f"STOW-RS from a peer not on the allow-list: HTTP {status}, expected 403 and nothing kept")
metrics = request(f"http://127.0.0.1:{node_http}/metrics")[1].decode()
for outcome in ("bad_request", "refused", "stored"):
    if f'ich_serve_stow_requests_total{{outcome="{outcome}"}} 0' in metrics:
        fail(f"/metrics: no STOW-RS request counted as {outcome}")
print("2. STOW-RS: another media type 415, not multipart 400, a non-DICOM part 409 (0xC000), the node's own SR "
      "409 (0x0122: only CT is taken, so results routed back reopen nothing), a peer not on the allow-list 403", flush=True)

# 3. The archive down while results are due; kill -9 while retrying; the archive back: delivered once.
orthanc_proc.terminate()
orthanc_proc.wait(30)
status, answer = request(stow, b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\n" + open(f, "rb").read() + b"\r\n"
                                        for f in paths[1]) + b"--b--\r\n",
                         {"Content-Type": "multipart/related; type=\"application/dicom\"; boundary=b"}, "POST")
if status != 200 or len(json.loads(answer)["00081199"]["Value"]) != len(paths[1]):
    fail(f"STOW-RS of study 1 to the node: HTTP {status}, {answer[:300]!r}")
state = f"node/studies/{study_uid[1]}/state"
wait_for("a failed send of study 1", lambda: os.path.exists(state) and
         any(l.startswith("send_attempts ") and int(l.split()[1]) >= 1 for l in open(state)), 60)
if "STOW-RS" not in open(state).read():
    fail("study 1: its state does not name the STOW-RS archive among the failures")
node.send_signal(signal.SIGKILL)
node.wait()
start_orthanc()
node = start_node()
line = wait_for("study 1's result after the archive came back", lambda: result_of(study_uid[1]), 60)[0]
time.sleep(2)
m = qido_modalities(study_uid[1])
if len(result_of(study_uid[1])) != 1 or m.get("SR") != 1 or m.get("KO") != 1 or m.get("OT") != 3:
    fail(f"study 1: {len(result_of(study_uid[1]))} results, Orthanc has {m}: expected one of each (SR, KO, 3 OT)")
print(f"3. the archive down, kill -9 while retrying: delivered once after {line['sent']['attempts']} attempts", flush=True)

# 4. The FHIR server comes up: each study's Bundle arrives once.
received = []


class Fhir(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append((self.path, self.headers.get("Authorization"), self.headers.get("Content-Type"), body))
        answer = json.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


fhir_server = ThreadingHTTPServer(("127.0.0.1", fhir_port), Fhir)
threading.Thread(target=fhir_server.serve_forever, daemon=True).start()
fhir_lines = lambda: [json.loads(l) for l in open("node/fhir.jsonl")] if os.path.exists("node/fhir.jsonl") else []
wait_for("both studies' FHIR Bundles", lambda: len(fhir_lines()) >= 2, 60)
time.sleep(3)  # a second post would come within the retry time
from fhir.resources.bundle import Bundle  # noqa: E402  (R4: fhir.resources 6.4)
if len(received) != 2 or len(fhir_lines()) != 2:
    fail(f"FHIR: {len(received)} posts and {len(fhir_lines())} fhir.jsonl lines for 2 studies")
for path, auth, ctype, body in received:
    if path != "/fhir" or auth != "Bearer t0ken-for-the-ehr" or not ctype.startswith("application/fhir+json"):
        fail(f"FHIR post to {path} with {auth!r}, {ctype!r}")
    bundle = Bundle.parse_raw(body)
    reports = [e.resource for e in bundle.entry if e.resource.resource_type == "DiagnosticReport"]
    obs = [e.resource for e in bundle.entry if e.resource.resource_type == "Observation"]
    if bundle.type != "transaction" or len(reports) != 1 or len(obs) != 6:
        fail(f"FHIR: a {bundle.type} Bundle of {len(reports)} reports and {len(obs)} observations")
    report = reports[0]
    uid = report.imagingStudy[0].identifier.value.removeprefix("urn:oid:")
    res = result_of(uid)
    if report.status != "preliminary" or not res or {r.reference for r in report.result} != {e.fullUrl for e in bundle.entry
                                                                                             if e.resource.resource_type == "Observation"}:
        fail(f"FHIR: report {report.status} on study {uid} (a result: {bool(res)}) does not list its observations")
    names = {"1386000": "any", "EDH": "epidural", "274100004": "intraparenchymal", "IVH": "intraventricular",
             "21454007": "subarachnoid", "SDH": "subdural"}
    for o in obs:
        label = names[o.code.coding[0].code]
        p = [c.valueQuantity.value for c in o.component if c.code.coding[0].code == "122157"][0]
        if float(p) != float(res[0]["probabilities"][label]) or o.status != "preliminary":
            fail(f"FHIR: {label} {p} ({o.status}), results.jsonl {res[0]['probabilities'][label]}")
        present = o.valueCodeableConcept.coding[0].code == "52101004"
        threshold = [c.valueQuantity.value for c in o.component if c.code.coding[0].code == "THRESHOLD"][0]
        if present != (float(p) >= THRESHOLDS[label]) or float(threshold) != THRESHOLDS[label]:
            fail(f"FHIR: {label} {p} evaluated {o.valueCodeableConcept.coding[0].display}")
print(f"4. FHIR down from the start, retried while the DICOM results went out, kill -9: each study's R4 Bundle "
      f"arrived once ({len(received)}), valid, its probabilities the results'", flush=True)
fhir_server.shutdown()

node.send_signal(signal.SIGTERM)
if node.wait(30) != 0:
    fail(f"ich-serve exited {node.returncode} on SIGTERM")
orthanc_proc.terminate()
orthanc_proc.wait(30)
sink.terminate()
print(f"serve dicomweb passed in {time.time() - t0:.0f} s")
