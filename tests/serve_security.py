#!/usr/bin/env python3
# ich-serve on a hostile network (issue "ich-serve on a hospital network"),
# everything on loopback, every server started and stopped here:
#   serve_security.py BIN WORK [SERVE_BIN]   (SERVE_BIN: an ich-serve built
#   with a sanitizer, run in place of BIN's; the other tools come from BIN)
#
# 1. Allow-list: an admitted AE from its host associates; an unknown calling
#    AE, a wrong called AE, and an admitted AE from another address
#    (127.0.0.2) are rejected with PS3.8's reasons, each with one audit
#    record; SIGHUP reads the allow file again (and a broken one is refused).
# 2. Hostile peers (from 127.0.0.3 and .4) while a study arrives from
#    127.0.0.1: empty, random, truncated, oversized, mutated and silent
#    connections, wrong first PDUs: the node keeps answering C-ECHO, loses
#    nothing of the study (its results reach the destination), and its
#    threads, descriptors and memory come back after each wave.
# 3. /metrics passes `promtool check metrics` and its counters are what was
#    sent; /readyz turns 503 when the destination is down and when the work
#    folder's disk is below --min-free-mb, and 200 again after.
# 3b. The HTTP port flooded (idle connections, trickled requests, garbage) on
#    a node limited to 1,024 descriptors: its DICOM port answers and stores,
#    descriptors and memory stay bounded; a stranger's STOW-RS body is
#    refused before it is read, a third concurrent one 503; SIGTERM stops it.
# 4. TLS: storescu +tls with a certificate of the node's CA stores; a plain
#    association, a certificate of another CA, TLS 1.0 and 1.1 are refused;
#    TLS 1.2 with the right certificate is the control; results go to a TLS
#    storescp and arrive.
# 4b. Audit over TLS (RFC 5425): a collector whose certificate chains to the
#    CA but names another host is refused (the node says why, keeps
#    serving, and sends it nothing); the TLS node's records go to rsyslog's
#    TLS input, which requires the node's certificate.
# 5. Audit: every JSON line parses and carries PS3.15 event codes; rsyslog
#    (Debian's) received the same records as RFC 5424 messages with XML
#    AuditMessages, over TCP from node A and over TLS from node B.
import json
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pydicom
from pynetdicom import AE

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_util import (CT_STORAGE, IMPLICIT_LE, VERIFICATION, associate_rq, fail, free_port,  # noqa: E402
                        phantom_studies, procs, read_pdu, run, small_model, try_associate, wait_for)

BIN, WORK = sys.argv[1], sys.argv[2]
SERVE = (sys.argv[3] if len(sys.argv) > 3 else BIN) + "/ich-serve"
shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
t0 = time.time()
small_model(BIN, patients=6, slices=40, size=64)
paths, study_uid = phantom_studies("ph/dicom", "studies")
print(f"model and {len(paths)} studies of {len(paths[0])} slices in {time.time() - t0:.1f} s", flush=True)

# ---------------------------------------------------------------- certificates (openssl)
os.makedirs("pki")


def openssl(*args):
    run("openssl", *args, cwd="pki")


def cert(name, ca, cn, san=None):
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    ext = []
    if san:  # the names a TLS client checks (RFC 6125: subjectAltName, not the CN)
        with open(f"pki/{name}.ext", "w") as f:
            f.write(f"subjectAltName={san}\n")
        ext = ["-extfile", f"{name}.ext"]
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-sha256", *ext)


for ca in ("ca", "rogue_ca"):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
            "-subj", f"/CN={ca} test CA", "-sha256")
cert("node", "ca", "ich-serve")       # the node's identity
cert("sender", "ca", "storescu")      # a sender the node trusts
cert("dest", "ca", "pacs")            # the TLS destination
cert("rogue", "rogue_ca", "storescu")  # a sender from another CA
cert("collector", "ca", "audit collector", "IP:127.0.0.1")                # rsyslog's TLS input
cert("collector_elsewhere", "ca", "audit collector", "DNS:elsewhere.example")  # the CA's, for another host
pki = os.path.abspath("pki")

# ---------------------------------------------------------------- rsyslog and destinations
syslog_port, syslog_tls_port = free_port(), free_port()
os.makedirs("rsyslog")
with open("rsyslog/rsyslog.conf", "w") as f:
    # What rsyslog parsed of each RFC 5424 header, then the message. The TLS input (the ossl driver) takes
    # only clients with a certificate of the CA, and writes apart.
    f.write(f'global(workDirectory="{WORK}/rsyslog")\nmodule(load="imtcp")\n'
            'template(name="fields" type="string" string="%app-name%|%msgid%|%pri%|%procid%|%msg%\\n")\n'
            f'input(type="imtcp" port="{syslog_port}" address="127.0.0.1")\n'
            f'input(type="imtcp" port="{syslog_tls_port}" address="127.0.0.1" ruleset="tls" streamDriver.name="ossl" '
            f'streamDriver.mode="1" streamDriver.authMode="x509/certvalid" streamDriver.caFile="{WORK}/pki/ca.pem" '
            f'streamDriver.certFile="{WORK}/pki/collector.pem" streamDriver.keyFile="{WORK}/pki/collector.key")\n'
            f'ruleset(name="tls") {{ action(type="omfile" file="{WORK}/rsyslog/audit_tls.log" template="fields") }}\n'
            f'action(type="omfile" file="{WORK}/rsyslog/audit.log" template="fields")\n')
rsyslog = subprocess.Popen(["rsyslogd", "-n", "-f", "rsyslog/rsyslog.conf", "-i", f"{WORK}/rsyslog/pid"],
                           stdout=open("rsyslog/out.txt", "w"), stderr=subprocess.STDOUT)
procs.append(rsyslog)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


wait_for("rsyslog", lambda: listening(syslog_port) and listening(syslog_tls_port), 30)


def start_storescp(port, out, *tls):
    os.makedirs(out, exist_ok=True)
    p = subprocess.Popen(["storescp", "-aet", "PACS", "-od", out, *tls, str(port)], stdout=subprocess.DEVNULL,
                         stderr=open(f"{out}.log", "a"))
    procs.append(p)
    wait_for(f"storescp on {port}", lambda: listening(port), 30)
    return p


dest_port, tls_dest_port = free_port(), free_port()
dest = start_storescp(dest_port, "pacs")
tls_dest = start_storescp(tls_dest_port, "tls_pacs", "+tls", f"{pki}/dest.key", f"{pki}/dest.pem", "+cf", f"{pki}/ca.pem")

# ---------------------------------------------------------------- node A (plain)
port, http = free_port(), free_port()
with open("allow.txt", "w") as f:
    f.write("# who may send to node A\nSTORESCU@127.0.0.1\nECHOSCU@127.0.0.1\nPYNETDICOM@127.0.0.1  # the slow sender\n"
            "LEGIT@127.0.0.1\n")


def start_node(name, node_port, *extra, dest_args=("--dest-port", str(dest_port)), stable="1", fd_limit=None):
    def limits():  # fd_limit: systemd's default soft limit for a service is 1,024
        if fd_limit:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    p = subprocess.Popen([SERVE, "--aet", "ICH", "--port", str(node_port), "--checkpoint", "run/best.ckpt", "--work", name,
                          "--dest-aet", "PACS", "--dest-host", "127.0.0.1", *dest_args, "--stable-seconds", stable,
                          "--retry-max-seconds", "2", "--device", "cpu", "--acse-timeout", "3", "--dest-echo-seconds",
                          "1", *extra], stdout=subprocess.DEVNULL, stderr=open(f"{name}.log", "a"), preexec_fn=limits)
    procs.append(p)
    wait_for(f"{name} to listen", lambda: p.poll() is not None or listening(node_port), 60)
    if p.poll() is not None:
        fail(f"{name} exited {p.returncode}: {open(name + '.log').read()[-2000:]}")
    return p


node = start_node("nodeA", port, "--allow-file", "allow.txt", "--http", f"127.0.0.1:{http}", "--audit-syslog",
                  f"127.0.0.1:{syslog_port}", "--min-free-mb", "1")


def get(path, http_port=None):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port or http}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def echo(p=None, aet="ECHOSCU", *tls):
    return subprocess.run(["echoscu", "-to", "10", "-aet", aet, "-aec", "ICH", *tls, "127.0.0.1", str(p or port)],
                          capture_output=True, text=True)


def storescu(node_port, files, *flags):
    return subprocess.run(["storescu", "-to", "10", "-aec", "ICH", *flags, "127.0.0.1", str(node_port), *files],
                          capture_output=True, text=True)


def ready(http_port=None):
    return get("/readyz", http_port)[0] == 200


wait_for("node A ready (models loaded, destination answering)", ready, 60)


def type_code(record):
    types = record["EventIdentification"]["EventTypeCode"]
    return types[0]["csd-code"] if types else None


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    fail(f"{name} is not in /metrics")


def audit(name):
    with open(f"{name}/audit.jsonl") as f:
        return [json.loads(line) for line in f]


def rejections(name):
    """(calling AE, address, description) of each Security Alert / Node Authentication record."""
    out = []
    for r in audit(name):
        ev = r["EventIdentification"]
        if ev["EventID"]["csd-code"] == "110113" and type_code(r) == "110126":
            p = r["ActiveParticipant"][0]
            out.append((p["UserID"], p["NetworkAccessPointID"], ev["EventOutcomeDescription"]))
    return out


def results_at(folder, uid):
    """SOP classes of the objects stored at a storescp for a study."""
    found = []
    for name in os.listdir(folder):
        try:
            ds = pydicom.dcmread(f"{folder}/{name}", stop_before_pixels=True)
        except Exception:  # still being written by storescp
            continue
        if ds.StudyInstanceUID == uid:
            found.append(ds.SOPClassUID)
    return found


SR = "1.2.840.10008.5.1.4.1.1.88.33"


# ---------------------------------------------------------------- 1. allow-list
if echo().returncode != 0:
    fail(f"the admitted ECHOSCU@127.0.0.1 was not answered: {echo().stderr}")
cases = [  # (calling, called, source, PS3.8 reason: 3 calling AE, 7 called AE not recognized)
    ("NOBODY", "ICH", "127.0.0.1", 3),
    ("LEGIT", "NOTICH", "127.0.0.1", 7),
    ("LEGIT", "ICH", "127.0.0.2", 3),
]
before = len(rejections("nodeA"))
for calling, called, source, reason in cases:
    outcome, detail = try_associate(port, calling, called, source)
    if outcome != "rejected" or detail != (1, 1, reason):
        fail(f"{calling}@{source} -> {called}: expected rejected-permanent by the service user, reason {reason}; "
             f"got {outcome} {detail}")
if try_associate(port, "LEGIT", "ICH", "127.0.0.1")[0] != "accepted":
    fail("LEGIT@127.0.0.1 (in the allow file) was not accepted")
r = storescu(port, paths[0])
if r.returncode != 0:
    fail(f"storescu as the admitted STORESCU@127.0.0.1: {r.stderr}")
r = storescu(port, paths[0][:1], "-aet", "NOBODY")
if r.returncode == 0 or "calling ae title not recognized" not in r.stderr.lower():
    fail(f"storescu as an unknown AE was not rejected as such: {r.stderr}")
got = rejections("nodeA")[before:]
for calling, called, source, _ in cases + [("NOBODY", "ICH", "127.0.0.1", 3)]:
    if not [g for g in got if g[0] == calling and g[1] == source and f"called AE {called}" in g[2]]:
        fail(f"no audit record for the rejection of {calling}@{source} -> {called}: {got}")
if len(got) != 4:
    fail(f"expected one audit record per rejected association (4), got {len(got)}: {got}")
if "to admit it: --allow 'NOBODY@127.0.0.1'" not in open("nodeA.log").read():
    fail("the log does not say how to admit a refused sender")
_, metrics_text = get("/metrics")
for reason, n in (("calling_aet", 3), ("called_aet", 1)):
    got_n = metric(metrics_text, f'ich_serve_associations_rejected_total{{reason="{reason}"}}')
    if got_n != n:
        fail(f"/metrics counts {got_n} associations rejected for {reason}; the test made {n}")
# SIGHUP: the allow file read again (127.0.0.2 admitted), then a broken one refused (the old list stays).
with open("allow.txt", "a") as f:
    f.write("LEGIT@127.0.0.2\n")
node.send_signal(signal.SIGHUP)
wait_for("SIGHUP to be read", lambda: "allow-list read again (SIGHUP)" in open("nodeA.log").read(), 15)
if try_associate(port, "LEGIT", "ICH", "127.0.0.2")[0] != "accepted":
    fail("after SIGHUP, LEGIT@127.0.0.2 (now in the allow file) was not accepted")
with open("allow.txt", "a") as f:
    f.write("this is not an entry\n")
node.send_signal(signal.SIGHUP)
wait_for("the broken allow file to be refused", lambda: "allow-list not changed (SIGHUP)" in open("nodeA.log").read(), 15)
if try_associate(port, "LEGIT", "ICH", "127.0.0.2")[0] != "accepted":
    fail("a broken allow file on SIGHUP changed the list in force")
config = [r for r in audit("nodeA") if type_code(r) == "110129"]
if [r["EventIdentification"]["EventOutcomeIndicator"] for r in config] != [0, 4]:
    fail(f"SIGHUP: expected two Security Configuration records (success, then failure), got {config}")
wait_for("the first study's results at the destination", lambda: SR in results_at("pacs", study_uid[0]), 120)
print("1. allow-list: admitted AE stores; unknown calling AE, wrong called AE, other host rejected with PS3.8's "
      "reasons, one audit record each; SIGHUP re-reads the list, a broken file is refused", flush=True)

# ---------------------------------------------------------------- 2. hostile peers
rng = random.Random(int(os.environ.get("ICH_HOSTILE_SEED", "31")))
valid_rq = associate_rq("HOSTILE", "ICH", ((1, CT_STORAGE, (IMPLICIT_LE,)), (3, VERIFICATION, (IMPLICIT_LE,))))


def hostile_one(kind, source):
    try:
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        if kind == "empty":
            pass
        elif kind == "random":
            s.sendall(os.urandom(rng.randint(1, 400)))
        elif kind == "truncated":
            s.sendall(valid_rq[:rng.randint(1, len(valid_rq) - 1)])
        elif kind == "oversized":  # an A-ASSOCIATE-RQ that claims 4 GB
            s.sendall(bytes([1, 0]) + struct.pack(">I", 0xFFFFFFF0) + os.urandom(64))
        elif kind == "mutated":  # a real request with bytes flipped past the header: DCMTK's parser meets it
            b = bytearray(valid_rq)
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(6, len(b))] = rng.randrange(256)
            s.sendall(bytes(b))
            kind_, _ = read_pdu(s, 5)
            if kind_ == 0x02:  # accepted after all: garbage where P-DATA belongs
                s.sendall(bytes([4, 0]) + struct.pack(">I", 0x7FFFFFFF) + os.urandom(32))
        elif kind == "wrong_pdu":
            s.sendall(bytes([rng.choice([2, 3, 4, 5, 6, 7]), 0]) + struct.pack(">I", 16) + os.urandom(16))
        elif kind == "tls_hello":
            s.sendall(bytes([0x16, 3, 1, 0, 0x40]) + os.urandom(0x40))
        elif kind == "rq_then_close":
            s.sendall(valid_rq)
        s.close()
    except OSError:
        pass  # the node may close or reset first: that is its right


kinds = ["empty", "random", "truncated", "oversized", "mutated", "wrong_pdu", "tls_hello", "rq_then_close"]


def wave(n, source="127.0.0.3", workers=8):
    todo = list(range(n))
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            hostile_one(kinds[i % len(kinds)], source)
    ts = [threading.Thread(target=work) for _ in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


stop_silent = threading.Event()


def silent_holder():  # associations that never send: held open, again as soon as the node drops them
    socks = []
    while not stop_silent.is_set():
        socks = [s for s in socks if s.fileno() >= 0]
        while len(socks) < 4:
            s = socket.socket()
            s.bind(("127.0.0.4", 0))
            try:
                s.connect(("127.0.0.1", port))
                socks.append(s)
            except OSError:
                s.close()
                break
        time.sleep(0.5)
        for s in list(socks):  # the node closes silent ones after --acse-timeout
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    s.close()
            except BlockingIOError:
                pass
            except OSError:
                s.close()
    for s in socks:
        s.close()


def resources(pid):
    with open(f"/proc/{pid}/status") as f:
        st = dict(line.split(":", 1) for line in f if ":" in line)
    return {"rss_mb": int(st["VmRSS"].split()[0]) / 1024, "threads": int(st["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def settled(pid, base):
    def ok():
        r = resources(pid)
        return r if r["threads"] <= base["threads"] + 2 and r["fds"] <= base["fds"] + 4 else None
    return wait_for("the node's threads and descriptors to come back after the wave", ok, 30)


wave(200)  # warm-up: the allocator and thread caches reach their working size
base = settled(node.pid, resources(node.pid))
# The legitimate study, sent slowly by pynetdicom from 127.0.0.1 while the waves run.
statuses = []


def slow_sender():
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(CT_STORAGE, IMPLICIT_LE)
    assoc = ae.associate("127.0.0.1", port, ae_title="ICH")
    if not assoc.is_established:
        statuses.append("no association")
        return
    for p in paths[1]:
        st = assoc.send_c_store(pydicom.dcmread(p))
        statuses.append(st.Status if st else "no response")
        time.sleep(0.05)
    assoc.release()


holder = threading.Thread(target=silent_holder)
holder.start()
sender = threading.Thread(target=slow_sender)
sender.start()
t1 = time.time()
wave(1000)
echo_during = echo()  # while silent peers hold connections open
sender.join(120)
stop_silent.set()
holder.join(30)
after1 = settled(node.pid, base)
wave(1000)
after2 = settled(node.pid, base)
if echo_during.returncode != 0:
    fail(f"C-ECHO was not answered during the hostile waves: {echo_during.stderr}")
if node.poll() is not None:
    fail(f"node A died under hostile peers (exit {node.returncode}): {open('nodeA.log').read()[-2000:]}")
if statuses != [0] * len(paths[1]):
    fail(f"the study sent during the waves was not stored whole: statuses {statuses}")
growth = after2["rss_mb"] - after1["rss_mb"]
if growth > 25:
    fail(f"memory grew {growth:.1f} MB over the second wave of 1000 connections (leak?): {after1} -> {after2}")


wait_for("the study's results at the destination", lambda: SR in results_at("pacs", study_uid[1]), 120)
line = wait_for("the study's results.jsonl line (written after the send)",
                lambda: [json.loads(x) for x in open("nodeA/results.jsonl") if study_uid[1] in x], 30)
if len(line) != 1 or line[0]["instances"] != len(paths[1]):
    fail(f"results.jsonl for the study sent under fire: {line}")
_, metrics_text = get("/metrics")
print(f"2. 2,200 hostile connections (empty, random, truncated, oversized, mutated, wrong PDUs, TLS hellos, silent) "
      f"in {time.time() - t1:.0f} s while a {len(paths[1])}-slice study arrived: C-ECHO answered, the study stored "
      f"whole and its results delivered; threads {base['threads']} -> {after2['threads']}, descriptors "
      f"{base['fds']} -> {after2['fds']}, RSS {base['rss_mb']:.0f} -> {after1['rss_mb']:.0f} -> "
      f"{after2['rss_mb']:.0f} MB", flush=True)

# ---------------------------------------------------------------- 3. metrics and readiness
r = subprocess.run(["promtool", "check", "metrics"], input=metrics_text, capture_output=True, text=True)
if r.returncode != 0:
    fail(f"promtool check metrics: {r.stdout} {r.stderr}")


if metric(metrics_text, "ich_serve_instances_received_total") != len(paths[0]) + len(paths[1]):
    fail("ich_serve_instances_received_total is not the instances sent")
if metric(metrics_text, "ich_serve_audit_syslog_up") != 1:
    fail("ich_serve_audit_syslog_up is not 1 while rsyslog takes node A's records")
conns = sum(metric(metrics_text, f'ich_serve_connections_total{{outcome="{k}"}}')
            for k in ("association", "closed_early", "silent", "not_dicom", "tls_failed", "tls_required",
                      "tls_not_configured", "too_many", "bad_request"))
if conns < 2200:
    fail(f"/metrics accounts for {conns} connections, at least 2,200 were made")
# Destination down, then back.
dest.terminate()
dest.wait(10)
wait_for("/readyz to turn 503 with the destination down",
         lambda: get("/readyz")[0] == 503 and not json.loads(get("/readyz")[1])["checks"]["destination"]["ok"], 30)
dest = start_storescp(dest_port, "pacs")
wait_for("/readyz back to 200", ready, 30)
# The work folder's disk below --min-free-mb (a file fills what is above it), then freed: on node C, started
# with --min-free-mb 200 MB under what is free now, so that node A never sees it.
http_c = free_port()
node_c = start_node("nodeC", free_port(), "--allow", "ECHOSCU@127.0.0.1", "--http", f"127.0.0.1:{http_c}",
                    "--min-free-mb", str(shutil.disk_usage(WORK).free // (1 << 20) - 200))
wait_for("node C ready", lambda: ready(http_c), 60)
with open("filler", "wb") as f:
    os.posix_fallocate(f.fileno(), 0, 300 << 20)  # 100 MB past the 200 MB margin
wait_for("/readyz to turn 503 with the disk full",
         lambda: get("/readyz", http_c)[0] == 503 and not json.loads(get("/readyz", http_c)[1])["checks"]["work"]["ok"], 30)
os.remove("filler")
wait_for("/readyz back to 200 with room again", lambda: ready(http_c), 30)
node_c.send_signal(signal.SIGTERM)
if node_c.wait(60) != 0:
    fail(f"node C exited {node_c.returncode} on SIGTERM: {open('nodeC.log').read()[-2000:]}")
if get("/healthz") != (200, "ok\n"):
    fail(f"/healthz: {get('/healthz')}")
print("3. /metrics passes promtool; counters equal what was sent; /readyz 503 with the destination down and with "
      "the disk under --min-free-mb, 200 again after each", flush=True)

# ---------------------------------------------------------------- 3b. the HTTP port under fire
# Node D: --http with STOW-RS, under a 1,024-descriptor limit. While idle connections flood its HTTP port, peers
# trickle requests a byte a second, send garbage and oversized headers, and a peer the allow-list does not name
# announces an 800 MB STOW-RS body: the DICOM port answers and stores a study, the node's descriptors and
# memory stay bounded, the stranger is answered 403 before its body, a third concurrent STOW-RS body 503; after
# the flood /healthz answers; SIGTERM with trickling peers still connected stops the node in seconds.
http_d, port_d = free_port(), free_port()
node_d = start_node("nodeD", port_d, "--allow", "ECHOSCU@127.0.0.1", "--allow", "STORESCU@127.0.0.1", "--allow",
                    "STOW@127.0.0.1", "--http", f"127.0.0.1:{http_d}", "--stow", stable="600", fd_limit=1024)
wait_for("node D's /healthz", lambda: get("/healthz", http_d)[0] == 200, 60)
base_d = resources(node_d.pid)


def http_conn(source="127.0.0.5", timeout=1.0):
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", http_d))
    return s


def answer_of(s, limit=5.0):
    s.settimeout(limit)
    try:
        return s.recv(4096).decode(errors="replace")
    except OSError:
        return ""


trickle_stop = threading.Event()
trickling = []


def trickler():  # a request's headers, one byte a second, never finished
    try:
        s = http_conn("127.0.0.7", 5)
    except OSError:
        return
    trickling.append(s)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4000
    for b in head:
        if trickle_stop.is_set():
            return
        try:
            s.send(bytes([b]))
        except OSError:
            return
        time.sleep(1)


trick_threads = [threading.Thread(target=trickler, daemon=True) for _ in range(4)]
for th in trick_threads:
    th.start()
time.sleep(1)
# garbage and an oversized header line: answered (400/431) or closed, never more
for junk in (os.urandom(300), b"GET / HTTP/1.1\r\nX: " + b"b" * 20000 + b"\r\n\r\n", b"POST /studies HTTP/1.1\r\n"
             b"Content-Length: -5\r\n\r\n"):
    try:
        s = http_conn("127.0.0.5", 10)
        s.sendall(junk)
        a = answer_of(s)
        if a and not a.startswith("HTTP/1.1 4"):
            fail(f"node D answered garbage with {a[:80]!r}")
        s.close()
    except OSError:
        pass
# a stranger's 800 MB STOW-RS body: 403 before any of it is read
stranger = http_conn("127.0.0.6", 10)
stranger.sendall(b"POST /studies HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related; type=\"application/dicom\"; "
                 b"boundary=b\r\nContent-Length: 838860800\r\n\r\n")  # and not a byte of the body
stranger_answer = answer_of(stranger, 10)
# two admitted STOW-RS bodies in progress (trickled), then a third: 503 with Retry-After
admitted = []
for _ in range(2):
    s = http_conn("127.0.0.1", 10)
    s.sendall(b"POST /studies HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related; type=\"application/dicom\"; "
              b"boundary=b\r\nContent-Length: 1000000\r\n\r\n--b\r\n")
    admitted.append(s)
time.sleep(1)
third = http_conn("127.0.0.1", 10)
third.sendall(b"POST /studies HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/related; type=\"application/dicom\"; "
              b"boundary=b\r\nContent-Length: 1000000\r\n\r\n")
third_answer = answer_of(third, 10)
for s in admitted + [third, stranger]:
    s.close()
# the flood: idle connections until the node stops accepting (the kernel's backlog full)
flood, misses, flood_end = [], 0, time.time() + 10
while len(flood) < 1500 and misses < 10 and time.time() < flood_end:
    try:
        flood.append(http_conn("127.0.0.5", 0.3))
    except OSError:
        misses += 1
under = resources(node_d.pid)
echo_d = echo(port_d)
store_d = storescu(port_d, paths[3])
under_after = resources(node_d.pid)
for s in flood:
    s.close()
if "403" not in stranger_answer.split("\r\n", 1)[0]:
    fail(f"a STOW-RS body from a peer not on the allow-list was not refused before it was read: {stranger_answer[:200]!r}")
if not third_answer.startswith("HTTP/1.1 503") or "Retry-After" not in third_answer:
    fail(f"a third STOW-RS body while two are read: {third_answer[:200]!r}")
if echo_d.returncode != 0 or store_d.returncode != 0:
    fail(f"node D's DICOM port while its HTTP port was flooded: C-ECHO {echo_d.stderr[-300:]} C-STORE {store_d.stderr[-300:]}")
bound = base_d["fds"] + 8 + 16 + 40  # ich-serve's HTTP threads and queue (serve/http.h), the study's files, slack
if max(under["fds"], under_after["fds"]) > bound or under["rss_mb"] > base_d["rss_mb"] + 150:
    fail(f"node D under the flood: {under} then {under_after} (base {base_d}; at most {bound} descriptors)")
wait_for("node D's /healthz after the flood", lambda: get("/healthz", http_d)[0] == 200, 60)
t_stop = time.time()
node_d.send_signal(signal.SIGTERM)  # the trickling peers still connected
try:
    rc_d = node_d.wait(20)
except subprocess.TimeoutExpired:
    fail("node D did not stop within 20 s of SIGTERM with peers trickling on its HTTP port")
trickle_stop.set()
for s in trickling:
    s.close()
if rc_d != 0:
    fail(f"node D exited {rc_d} on SIGTERM: {open('nodeD.log').read()[-2000:]}")
print(f"3b. HTTP port flooded ({len(flood)} idle connections taken before the node stopped accepting, 4 trickling, "
      f"garbage): C-ECHO answered and a {len(paths[3])}-slice study stored on the DICOM port; descriptors "
      f"{base_d['fds']} -> {under['fds']}, RSS {base_d['rss_mb']:.0f} -> {under['rss_mb']:.0f} MB; an 800 MB STOW-RS "
      f"body from a stranger refused (403) before it was read, a third concurrent body 503; stopped "
      f"{time.time() - t_stop:.1f} s after SIGTERM", flush=True)

# ---------------------------------------------------------------- 4. TLS
tls_port = free_port()
node_b = start_node("nodeB", tls_port, "--allow", "STORESCU@127.0.0.1", "--allow", "ECHOSCU@127.0.0.1",
                    "--tls-cert", f"{pki}/node.pem", "--tls-key", f"{pki}/node.key", "--tls-ca", f"{pki}/ca.pem",
                    "--dest-tls-ca", f"{pki}/ca.pem", "--dest-tls-cert", f"{pki}/sender.pem", "--dest-tls-key",
                    f"{pki}/sender.key", "--audit-syslog", f"127.0.0.1:{syslog_tls_port}", "--audit-syslog-tls-ca",
                    f"{pki}/ca.pem", "--audit-syslog-tls-cert", f"{pki}/node.pem", "--audit-syslog-tls-key",
                    f"{pki}/node.key", dest_args=("--dest-port", str(tls_dest_port)))
sender_tls = ["+tls", f"{pki}/sender.key", f"{pki}/sender.pem", "+cf", f"{pki}/ca.pem"]
r = storescu(tls_port, paths[2], *sender_tls)
if r.returncode != 0:
    fail(f"storescu over TLS with the CA's certificate: {r.stderr}")
r = storescu(tls_port, paths[2][:1])
if r.returncode == 0 or "association rejected" not in r.stderr.lower():
    fail(f"a plain association to the TLS-only node was not rejected: {r.stderr}")
r = storescu(tls_port, paths[2][:1], "+tls", f"{pki}/rogue.key", f"{pki}/rogue.pem", "+cf", f"{pki}/ca.pem")
if r.returncode == 0:
    fail("a certificate from another CA was accepted")


def s_client(*flags):
    return subprocess.run(["timeout", "20", "openssl", "s_client", "-connect", f"127.0.0.1:{tls_port}", "-CAfile",
                           f"{pki}/ca.pem", "-cert", f"{pki}/sender.pem", "-key", f"{pki}/sender.key", *flags],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)


def negotiated(r):  # s_client prints "Cipher is (NONE)" when no handshake completed
    return "Cipher is " in r.stdout and "Cipher is (NONE)" not in r.stdout


control = s_client("-tls1_2")
if not negotiated(control) or "Protocol  : TLSv1.2" not in control.stdout:
    fail(f"the control (TLS 1.2, the CA's certificate) did not connect: {control.stdout[-800:]} {control.stderr[-800:]}")
for old in ("-tls1", "-tls1_1"):
    r = s_client(old, "-cipher", "DEFAULT@SECLEVEL=0")
    if negotiated(r):
        fail(f"openssl s_client {old} completed a handshake: {r.stdout[-800:]}")
wait_for("the TLS node's results at the TLS destination", lambda: SR in results_at("tls_pacs", study_uid[2]), 120)
tls_refusals = [g[2] for g in rejections("nodeB")]
for why in ("a plain (non-TLS) connection to a TLS-only node", "TLS handshake failed"):
    if not [t for t in tls_refusals if why in t]:
        fail(f"no audit record says '{why}': {tls_refusals}")
print("4. TLS: the CA's sender stores; plain, another CA's certificate, TLS 1.0 and 1.1 refused (TLS 1.2 control "
      "connects); results delivered to a TLS storescp", flush=True)

# ---------------------------------------------------------------- 4b. audit over TLS to the wrong collector
# openssl s_server with the CA's certificate for another host: it would print what it received (-quiet).
impostor_port, e_port, e_http = free_port(), free_port(), free_port()
impostor = subprocess.Popen(["openssl", "s_server", "-accept", str(impostor_port), "-cert", f"{pki}/collector_elsewhere.pem",
                             "-key", f"{pki}/collector_elsewhere.key", "-quiet"], stdin=subprocess.PIPE,
                            stdout=open("impostor.out", "w"), stderr=subprocess.STDOUT)
procs.append(impostor)
wait_for("openssl s_server", lambda: listening(impostor_port), 30)
node_e = start_node("nodeE", e_port, "--allow", "ECHOSCU@127.0.0.1", "--http", f"127.0.0.1:{e_http}",
                    "--audit-syslog", f"127.0.0.1:{impostor_port}",
                    "--audit-syslog-tls-ca", f"{pki}/ca.pem", "--audit-syslog-tls-cert", f"{pki}/node.pem",
                    "--audit-syslog-tls-key", f"{pki}/node.key")
refusal = f"audit syslog 127.0.0.1:{impostor_port}: TLS: the collector's certificate is not trusted: IP address mismatch"
wait_for("node E to refuse the collector for another host", lambda: refusal in open("nodeE.log").read(), 30)
time.sleep(1)  # a second or third retry of the same refusal is not logged again
r = echo(e_port)
if r.returncode != 0:
    fail(f"node E stopped answering while its audit collector is refused: {r.stderr}")
e_metrics = get("/metrics", e_http)[1]
if metric(e_metrics, "ich_serve_audit_syslog_up") != 0 or metric(e_metrics, "ich_serve_audit_syslog_sent_total") != 0:
    fail("node E's /metrics does not show its refused collector as down (ich_serve_audit_syslog_up 0) with nothing sent")
node_e.send_signal(signal.SIGTERM)
t_stop = time.time()
try:
    if node_e.wait(30) != 0:
        fail(f"node E exited {node_e.returncode} on SIGTERM: {open('nodeE.log').read()[-2000:]}")
except subprocess.TimeoutExpired:
    fail("node E, its audit collector refused, did not stop within 30 s of SIGTERM")
e_stop = time.time() - t_stop
impostor.terminate()
impostor.wait(10)
if "IHE+RFC-3881" in open("impostor.out", errors="replace").read():
    fail("node E sent audit records to a collector whose certificate names another host")
if open("nodeE.log").read().count("audit syslog") != 1:
    fail(f"node E logged its refused collector more than once: {open('nodeE.log').read()[-1500:]}")
if len(audit("nodeE")) < 2:
    fail(f"node E's refused collector cost its local audit log: {len(audit('nodeE'))} records")
print(f"4b. audit over TLS: a collector with the CA's certificate for another host refused ('IP address mismatch', "
      f"one log line), nothing sent to it, C-ECHO answered, stopped {e_stop:.1f} s after SIGTERM", flush=True)

# ---------------------------------------------------------------- 5. audit, and stopping
for p, name in ((node, "nodeA"), (node_b, "nodeB")):
    p.send_signal(signal.SIGTERM)
    try:
        if p.wait(60) != 0:
            fail(f"{name} exited {p.returncode} on SIGTERM: {open(name + '.log').read()[-2000:]}")
    except subprocess.TimeoutExpired:
        fail(f"{name} did not stop within 60 s of SIGTERM")
PS315 = {"110100", "110103", "110104", "110113", "110114"}
records = audit("nodeA")
codes = {r["EventIdentification"]["EventID"]["csd-code"] for r in records}
if codes != PS315:
    fail(f"node A's audit event IDs {sorted(codes)}, expected {sorted(PS315)}")
for r in records:
    if r["EventIdentification"]["EventOutcomeIndicator"] not in (0, 4, 8, 12) or not r["ActiveParticipant"]:
        fail(f"an audit record out of PS3.15's shape: {r}")
transfers = [r for r in records if r["EventIdentification"]["EventID"]["csd-code"] == "110104"
             and r["EventIdentification"]["EventActionCode"] == "C"]
if not [t for t in transfers if t["ParticipantObjectIdentification"][0]["ParticipantObjectID"] == study_uid[1]
        and t["ParticipantObjectIdentification"][0]["SOPClass"][0]["NumberOfInstances"] == len(paths[1])]:
    fail("no DICOM Instances Transferred record with the study's instance count")
lines = open("rsyslog/audit.log").read().splitlines()
syslog_codes = []
for line in lines:
    app, msgid, pri, procid, msg = line.split("|", 4)
    if app != "ich-serve" or msgid != "IHE+RFC-3881" or pri not in ("84", "85") or procid != str(node.pid):
        fail(f"rsyslog parsed another header: {line[:200]}")
    root = ET.fromstring(msg.lstrip("\ufeff").encode())
    if root.tag != "AuditMessage":
        fail(f"not an AuditMessage: {msg[:200]}")
    syslog_codes.append(root.find("EventIdentification/EventID").get("csd-code"))
if len(lines) != len(records) or sorted(syslog_codes) != sorted(r["EventIdentification"]["EventID"]["csd-code"]
                                                                 for r in records):
    fail(f"rsyslog received {len(lines)} records, the audit log has {len(records)}")
# Node B's over TLS: every record, as the node's own log has them.
records_b = audit("nodeB")
tls_lines = open("rsyslog/audit_tls.log").read().splitlines() if os.path.exists("rsyslog/audit_tls.log") else []
tls_codes = []
for line in tls_lines:
    app, msgid, pri, procid, msg = line.split("|", 4)
    if app != "ich-serve" or msgid != "IHE+RFC-3881" or procid != str(node_b.pid):
        fail(f"rsyslog's TLS input parsed another header: {line[:200]}")
    tls_codes.append(ET.fromstring(msg.lstrip("\ufeff").encode()).find("EventIdentification/EventID").get("csd-code"))
if sorted(tls_codes) != sorted(r["EventIdentification"]["EventID"]["csd-code"] for r in records_b):
    fail(f"rsyslog received {len(tls_lines)} records over TLS, node B's audit log has {len(records_b)}")
if f"audit syslog 127.0.0.1:{syslog_tls_port}: connected (TLSv1." not in open("nodeB.log").read():
    fail("node B does not say it reached its collector over TLS")
rsyslog.terminate()
rsyslog.wait(10)
for p in (dest, tls_dest):
    p.terminate()
print(f"5. audit: {len(records)} records parse, PS3.15 event IDs {sorted(codes)}; rsyslog received all "
      f"{len(lines)} as RFC 5424 with XML AuditMessages, and node B's {len(tls_lines)} over TLS (RFC 5425, "
      f"the node's certificate required)", flush=True)
print(f"serve security e2e passed in {time.time() - t0:.0f} s")
