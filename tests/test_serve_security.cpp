// ich-serve's security parts without DICOM: the allow-list (serve/access.h),
// the audit records and their syslog transport (serve/audit.h), the
// Prometheus text format (serve/metrics.h). The node itself, with hostile
// peers, TLS, rsyslog and promtool, is tested end to end
// (tests/serve_security.py).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/error.h"
#include "serve/access.h"
#include "serve/audit.h"
#include "serve/metrics.h"
#include "serve/pdu.h"

namespace ich {
namespace {

namespace fs = std::filesystem;

IpAddress ip(const std::string& s) {
  IpAddress a;
  EXPECT_TRUE(parse_ip(s, a)) << s;
  return a;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(ServeAccess, AddressesParseAndIpv4MappedIsNamedAsIpv4) {
  EXPECT_EQ(ip("10.1.2.3").text, "10.1.2.3");
  EXPECT_EQ(ip("::ffff:10.1.2.3").text, "10.1.2.3");
  EXPECT_EQ(ip("::ffff:10.1.2.3").bytes, ip("10.1.2.3").bytes);
  EXPECT_EQ(ip("::1").text, "::1");
  IpAddress a;
  EXPECT_FALSE(parse_ip("10.1.2", a));
  EXPECT_FALSE(parse_ip("pacs.example", a));
}

TEST(ServeAccess, EntriesAdmitTheirAeTitleFromTheirHostsOnly) {
  AccessPolicy p;
  for (const char* e : {"PACS@10.0.0.5", "MODALITY@192.168.4.0/24", "V6@fd00::/8", "ROUTER@*", "LOCAL@localhost"})
    p.entries.push_back(parse_allow_entry(e));
  EXPECT_TRUE(p.admits("PACS", ip("10.0.0.5")));
  EXPECT_TRUE(p.admits("PACS", ip("::ffff:10.0.0.5")));  // the same peer on a dual-stack socket
  EXPECT_FALSE(p.admits("PACS", ip("10.0.0.6")));        // the right AE from another host
  EXPECT_FALSE(p.admits("pacs", ip("10.0.0.5")));        // AE titles are case-sensitive
  EXPECT_FALSE(p.admits("OTHER", ip("10.0.0.5")));       // another AE from the right host
  EXPECT_TRUE(p.admits("MODALITY", ip("192.168.4.0")));
  EXPECT_TRUE(p.admits("MODALITY", ip("192.168.4.255")));
  EXPECT_FALSE(p.admits("MODALITY", ip("192.168.5.1")));
  EXPECT_TRUE(p.admits("V6", ip("fd12:3456::1")));
  EXPECT_FALSE(p.admits("V6", ip("fe80::1")));
  EXPECT_FALSE(p.admits("V6", ip("10.0.0.5")));          // an IPv6 block holds no IPv4 peer
  EXPECT_TRUE(p.admits("ROUTER", ip("8.8.8.8")));
  EXPECT_TRUE(p.admits("LOCAL", ip("127.0.0.1")));       // a name: the addresses it resolves to
  EXPECT_FALSE(p.admits("LOCAL", ip("127.0.0.2")));
  // A /25 splits a byte: the boundary is exact.
  AccessPolicy half;
  half.entries.push_back(parse_allow_entry("HALF@10.9.8.128/25"));
  EXPECT_FALSE(half.admits("HALF", ip("10.9.8.127")));
  EXPECT_TRUE(half.admits("HALF", ip("10.9.8.128")));
}

TEST(ServeAccess, TheDefaultAdmitsNobodyAndAllowAnyEverybody) {
  AccessPolicy none;
  EXPECT_FALSE(none.admits("ANY", ip("127.0.0.1")));
  EXPECT_NE(none.describe().find("nobody"), std::string::npos);
  AccessPolicy any;
  any.allow_any = true;
  EXPECT_TRUE(any.admits("ANY", ip("203.0.113.9")));
}

TEST(ServeAccess, BadEntriesAreOneLineNamingTheEntry) {
  EXPECT_NE(error_of([] { parse_allow_entry("PACS"); }).find("expected AET@HOST"), std::string::npos);
  EXPECT_NE(error_of([] { parse_allow_entry("THIS_AE_IS_TOO_LONG@10.0.0.1"); }).find("not an AE title"), std::string::npos);
  EXPECT_NE(error_of([] { parse_allow_entry("A\\B@10.0.0.1"); }).find("not an AE title"), std::string::npos);
  EXPECT_NE(error_of([] { parse_allow_entry("@10.0.0.1"); }).find("not an AE title"), std::string::npos);
  EXPECT_NE(error_of([] { parse_allow_entry("PACS@"); }).find("no host"), std::string::npos);
  EXPECT_NE(error_of([] { parse_allow_entry("PACS@10.0.0.0/33"); }).find("prefix length"), std::string::npos);
  EXPECT_NE(error_of([] { parse_allow_entry("PACS@10.0.0.0/x"); }).find("prefix length"), std::string::npos);
  EXPECT_NE(error_of([] { parse_allow_entry("PACS@no-such-host.invalid"); }).find("does not resolve"), std::string::npos);
}

TEST(ServeAccess, AllowFilesTakeCommentsAndNameTheBadLine) {
  const std::string path = ::testing::TempDir() + "/allow_" + std::to_string(::getpid());
  std::ofstream(path) << "# senders\nPACS@10.0.0.5   # the archive\n\n  CT1@10.0.1.0/24\n";
  const std::vector<AllowEntry> e = read_allow_file(path);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[1].aet, "CT1");
  std::ofstream(path) << "PACS@10.0.0.5\nbroken line\n";
  const std::string err = error_of([&] { read_allow_file(path); });
  EXPECT_NE(err.find(path + ":2:"), std::string::npos) << err;
  fs::remove(path);
  EXPECT_NE(error_of([&] { read_allow_file(path); }).find("cannot read"), std::string::npos);
}

AuditEvent sample_event(const std::string& calling) {
  AuditEvent e = audit::association_rejected("ICH", calling, "ICH", "10.0.0.9", "calling AE title not recognized");
  e.time_ms = 1796342400123;  // 2026-12-04T00:00:00.123Z
  e.objects = {audit::study("1.2.3", {{"1.2.840.10008.5.1.4.1.1.2", 40}})};
  return e;
}

TEST(ServeAudit, RecordsCarryThePs15CodesAndEscapeWhatPeersSend) {
  const AuditEvent e = sample_event("EVIL<&\"'>\x01");
  const std::string j = audit_json(e, "ich-serve ICH@host");
  EXPECT_NE(j.find("\"EventID\":{\"csd-code\":\"110113\",\"codeSystemName\":\"DCM\",\"originalText\":\"Security Alert\"}"),
            std::string::npos) << j;
  EXPECT_NE(j.find("\"csd-code\":\"110126\""), std::string::npos);
  EXPECT_NE(j.find("\"EventDateTime\":\"2026-12-04T00:00:00.123Z\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"EventOutcomeIndicator\":4"), std::string::npos);
  EXPECT_NE(j.find("\"UserID\":\"EVIL<&\\\"'>\\u0001\""), std::string::npos) << j;  // JSON-escaped
  EXPECT_NE(j.find("{\"UID\":\"1.2.840.10008.5.1.4.1.1.2\",\"NumberOfInstances\":40}"), std::string::npos);
  EXPECT_EQ(j.find('\n'), std::string::npos);  // one line
  const std::string x = audit_xml(e, "ich-serve ICH@host");
  EXPECT_NE(x.find("<EventID csd-code=\"110113\" codeSystemName=\"DCM\" originalText=\"Security Alert\"/>"), std::string::npos);
  EXPECT_NE(x.find("UserID=\"EVIL&lt;&amp;&quot;&apos;&gt;?\""), std::string::npos) << x;  // no raw markup, no control byte
  EXPECT_NE(x.find("<SOPClass UID=\"1.2.840.10008.5.1.4.1.1.2\" NumberOfInstances=\"40\"/>"), std::string::npos);
  EXPECT_EQ(x.rfind("</AuditMessage>"), x.size() - 15);
}

TEST(ServeAudit, SyslogMessagesFollowRfc5424) {
  const AuditEvent e = sample_event("PACS");
  const std::string m = syslog_message(e, "<AuditMessage/>", "node 1", 42);
  // <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD SP BOM MSG
  EXPECT_EQ(m, "<84>1 2026-12-04T00:00:00.123Z node-1 ich-serve 42 IHE+RFC-3881 - \xEF\xBB\xBF<AuditMessage/>");
  AuditEvent ok = audit::application("ICH", true, "started");
  ok.time_ms = e.time_ms;
  EXPECT_EQ(syslog_message(ok, "x", "h", 1).substr(0, 5), "<85>1");  // authpriv.notice for a success
}

struct ServeAuditLog : ::testing::Test {
  std::string path = ::testing::TempDir() + "/audit_" + std::to_string(::getpid()) + "_" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".jsonl";
  void SetUp() override { fs::remove(path); }
  void TearDown() override { fs::remove(path); }
  std::vector<std::string> lines() {
    std::ifstream in(path);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
};

TEST_F(ServeAuditLog, ARecordIsOnDiskWhenRecordReturns) {
  AuditOptions o;
  o.path = path;
  o.source_id = "test";
  AuditLog log(o);
  log.record(sample_event("PACS"));
  EXPECT_EQ(lines().size(), 1u);  // read while the log is still open
  log.record(sample_event("PACS"));
  EXPECT_EQ(lines().size(), 2u);
  EXPECT_EQ(log.stats().records, 2);
}

TEST_F(ServeAuditLog, RefusedConnectionsAreRecordedOncePerWindowWithACount) {
  AuditOptions o;
  o.path = path;
  o.noisy_window_s = 0.3;
  o.noisy_burst = 2;
  AuditLog log(o);
  for (int i = 0; i < 6; ++i) log.record_noisy("10.0.0.9|not_dicom", audit::connection_refused("ICH", "10.0.0.9", "garbage"));
  log.record_noisy("10.0.0.8|not_dicom", audit::connection_refused("ICH", "10.0.0.8", "garbage"));  // another peer
  EXPECT_EQ(lines().size(), 3u);  // the burst of two, and the other peer's
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  log.record_noisy("10.0.0.9|not_dicom", audit::connection_refused("ICH", "10.0.0.9", "garbage"));
  const auto l = lines();
  ASSERT_EQ(l.size(), 4u);
  EXPECT_NE(l[3].find("and 4 more like it"), std::string::npos) << l[3];
  EXPECT_EQ(log.stats().records, 4);
}

// A TCP listener on loopback that collects RFC 6587 octet-counted frames.
struct Collector {
  int fd = -1, port = 0;
  explicit Collector(int fixed_port = 0) {  // 0: any free port
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(uint16_t(fixed_port));
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    ::listen(fd, 4);
  }
  ~Collector() { ::close(fd); }
  // Frames received on one accepted connection within the time given.
  std::vector<std::string> frames(size_t want, int ms) {
    std::vector<std::string> out;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) return out;
    const int c = ::accept(fd, nullptr, nullptr);
    std::string buf;
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (out.size() < want && std::chrono::steady_clock::now() < end) {
      pollfd q{c, POLLIN, 0};
      if (::poll(&q, 1, 50) <= 0) continue;
      char b[4096];
      const ssize_t n = ::recv(c, b, sizeof b, 0);
      if (n <= 0) break;
      buf.append(b, size_t(n));
      for (;;) {
        const size_t sp = buf.find(' ');
        if (sp == std::string::npos) break;
        const size_t len = std::stoul(buf.substr(0, sp));
        if (buf.size() < sp + 1 + len) break;
        out.push_back(buf.substr(sp + 1, len));
        buf.erase(0, sp + 1 + len);
      }
    }
    ::close(c);
    return out;
  }
};

TEST_F(ServeAuditLog, SyslogGetsEveryRecordAndAnAbsentCollectorIsRetriedWithoutBlocking) {
  int port = 0;
  {
    Collector probe;  // a free port, then closed: nobody listens there at first
    port = probe.port;
  }
  AuditOptions o;
  o.path = path;
  o.syslog_host = "127.0.0.1";
  o.syslog_port = port;
  AuditLog log(o);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) log.record(sample_event("PACS" + std::to_string(i)));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 1.0);  // never waits on syslog
  EXPECT_EQ(lines().size(), 3u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(log.stats().syslog_sent, 0);
  EXPECT_EQ(log.stats().syslog_queued, 3);
  Collector c(port);  // the collector comes up: the queue drains, in order
  const std::vector<std::string> f = c.frames(3, 8000);
  ASSERT_EQ(f.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(f[size_t(i)].rfind("<84>1 ", 0), 0u) << f[size_t(i)];
    EXPECT_NE(f[size_t(i)].find("UserID=\"PACS" + std::to_string(i) + "\""), std::string::npos);
  }
}

TEST_F(ServeAuditLog, ACollectorThatClosedTheConnectionGetsTheNextRecordsOnANewOne) {
  Collector c;
  AuditOptions o;
  o.path = path;
  o.syslog_host = "127.0.0.1";
  o.syslog_port = c.port;
  AuditLog log(o);
  log.record(sample_event("PACS0"));
  ASSERT_EQ(c.frames(1, 8000).size(), 1u);  // and the collector closes that connection (a restart)
  // Written into the closed connection, the first would be lost: the sender sees the close and connects again.
  log.record(sample_event("PACS1"));
  log.record(sample_event("PACS2"));
  const std::vector<std::string> f = c.frames(2, 8000);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_NE(f[0].find("UserID=\"PACS1\""), std::string::npos);
  EXPECT_NE(f[1].find("UserID=\"PACS2\""), std::string::npos);
}

// What the audit trail's TLS options say when a file is missing or wrong: one
// line naming it, at start (the handshakes themselves are tested against
// rsyslog and openssl s_server in tests/serve_security.py).
TEST(ServeSyslogTransport, TlsFilesThatCannotBeUsedAreNamed) {
  const std::string dir = ::testing::TempDir() + "/syslog_tls_" + std::to_string(::getpid());
  fs::create_directories(dir);
  std::ofstream(dir + "/not_a_cert.pem") << "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
  auto error_of = [](const SyslogTls& t) {
    try {
      SyslogConnection c("127.0.0.1", 6514, t);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of({dir + "/absent.pem", "", ""}).find(dir + "/absent.pem: no such file"), std::string::npos);
  EXPECT_NE(error_of({dir + "/not_a_cert.pem", "", ""}).find(dir + "/not_a_cert.pem: cannot load the CA certificate"),
            std::string::npos);
  EXPECT_NE(error_of({"", dir + "/not_a_cert.pem", dir + "/not_a_cert.pem"}).find("needs --audit-syslog-tls-ca"),
            std::string::npos);
  EXPECT_NE(error_of({dir + "/not_a_cert.pem", dir + "/not_a_cert.pem", ""}).find("go together"), std::string::npos);
  EXPECT_EQ(error_of({}), "no error");  // plain TCP: nothing to load
  fs::remove_all(dir);
}

// An A-ASSOCIATE-RQ built item by item (PS3.8 9.3.2), as tests/serve_util.py builds it.
std::string item(uint8_t type, const std::string& value) {
  return std::string{char(type), 0, char(value.size() >> 8), char(value.size() & 0xff)} + value;
}
std::string rq(const std::string& contexts, const std::string& extra = "") {
  std::string body = std::string{0, 1, 0, 0} + std::string("ICH").append(13, ' ') + std::string("PACS").append(12, ' ') +
                     std::string(32, '\0') + item(0x10, "1.2.840.10008.3.1.1.1") + contexts +
                     item(0x50, item(0x51, std::string{0, 0, 0x40, 0}) + item(0x52, "1.2.3")) + extra;
  const size_t n = body.size();
  return std::string{1, 0, char(n >> 24), char(n >> 16 & 0xff), char(n >> 8 & 0xff), char(n & 0xff)} + body;
}
std::string context(uint8_t id, const std::string& subitems) { return item(0x20, std::string{char(id), 0, 0, 0} + subitems); }

TEST(ServePdu, WellFormedRequestsPassAndMalformedOnesAreNamed) {
  const std::string echo = item(0x30, "1.2.840.10008.1.1") + item(0x40, "1.2.840.10008.1.2");
  EXPECT_EQ(check_associate_rq(rq(context(1, echo))), "");
  EXPECT_EQ(check_associate_rq(rq(context(1, echo) + context(3, echo + item(0x40, "1.2.840.10008.1.2.1")))), "");
  EXPECT_EQ(check_associate_rq(rq(context(1, echo), item(0x77, "skipped by length"))), "");  // unknown items are skipped
  // DCMTK 3.6.7 leaks on this one (a context without a transfer syntax): it must not get it.
  EXPECT_NE(check_associate_rq(rq(context(1, item(0x30, "1.2.840.10008.1.1")))).find("0 transfer"), std::string::npos);
  EXPECT_NE(check_associate_rq(rq(context(1, echo + item(0x30, "1.2.3")))).find("2 abstract"), std::string::npos);
  EXPECT_NE(check_associate_rq(rq("")).find("no presentation context"), std::string::npos);
  EXPECT_NE(check_associate_rq(rq(context(1, item(0x30, std::string(65, '1')) + item(0x40, "1.2")))).find("65 bytes"),
            std::string::npos);
  std::string cut = rq(context(1, echo));
  cut[6 + 68 + 2] = char(0x7f);  // the application context item claims more than the PDU holds
  EXPECT_NE(check_associate_rq(cut).find("claims"), std::string::npos);
  std::string wrong_length = rq(context(1, echo));
  wrong_length[5] = char(wrong_length[5] + 1);
  EXPECT_NE(check_associate_rq(wrong_length).find("length field"), std::string::npos);
  EXPECT_NE(check_associate_rq(rq(context(1, echo)).substr(0, 70)).find("at least 74"), std::string::npos);
  std::string nul_calling = rq(context(1, echo));
  nul_calling[6 + 4 + 16] = '\0';  // a calling AE title DCMTK would read as empty
  EXPECT_NE(check_associate_rq(nul_calling).find("calling AE title has a byte"), std::string::npos);
  std::string blank_called = rq(context(1, echo));
  for (int k = 0; k < 16; ++k) blank_called[size_t(6 + 4 + k)] = ' ';
  EXPECT_NE(check_associate_rq(blank_called).find("called AE title is all spaces"), std::string::npos);
  // User information sub-items whose inner lengths do not fit (what the fuzzer made of a 0x52 item).
  const std::string uid = "1.2.826.0.1.3680043.2.1545.1";
  EXPECT_EQ(check_associate_rq(rq(context(1, echo), item(0x50, item(0x56, std::string{0, char(uid.size())} + uid + "\x01")))), "");
  EXPECT_NE(check_associate_rq(rq(context(1, echo), item(0x50, item(0x56, uid)))).find("sub-item 0x56"), std::string::npos);
  EXPECT_NE(check_associate_rq(rq(context(1, echo), item(0x50, item(0x54, std::string{0, 9} + "1.2")))).find("0x54"),
            std::string::npos);
  EXPECT_NE(check_associate_rq(rq(context(1, echo), item(0x50, item(0x51, "12")))).find("not 4 bytes"), std::string::npos);
  EXPECT_EQ(check_associate_rq(rq(context(1, echo), item(0x50, item(0x58, std::string{1, 0, 0, 3} + "bob" + std::string{0, 0})))), "");
  EXPECT_NE(check_associate_rq(rq(context(1, echo), item(0x50, item(0x58, std::string{1, 0, 0, 9} + "bob" + std::string{0, 0})))).find("0x58"),
            std::string::npos);
}

TEST(ServeMetrics, TextFormatHasHelpTypeLabelsAndCumulativeBuckets) {
  Metrics m;
  m.declare("t_requests_total", Metrics::Type::counter, "Requests");
  m.declare("t_depth", Metrics::Type::gauge, "Depth");
  m.declare("t_seconds", Metrics::Type::histogram, "Seconds", {0.1, 1});
  m.declare("t_unused_total", Metrics::Type::counter, "Never touched");
  m.add("t_requests_total", {{"reason", "a\"b\\c\nd"}}, 2);
  m.add("t_requests_total", {{"reason", "x"}});
  m.set("t_depth", {}, 7);
  for (double v : {0.05, 0.5, 0.5, 5.0}) m.observe("t_seconds", {{"stage", "s"}}, v);
  const std::string t = m.render();
  EXPECT_EQ(t,
            "# HELP t_depth Depth\n# TYPE t_depth gauge\nt_depth 7\n"
            "# HELP t_requests_total Requests\n# TYPE t_requests_total counter\n"
            "t_requests_total{reason=\"a\\\"b\\\\c\\nd\"} 2\nt_requests_total{reason=\"x\"} 1\n"
            "# HELP t_seconds Seconds\n# TYPE t_seconds histogram\n"
            "t_seconds_bucket{stage=\"s\",le=\"0.1\"} 1\nt_seconds_bucket{stage=\"s\",le=\"1\"} 3\n"
            "t_seconds_bucket{stage=\"s\",le=\"+Inf\"} 4\nt_seconds_sum{stage=\"s\"} 6.05\nt_seconds_count{stage=\"s\"} 4\n");
  EXPECT_EQ(m.value("t_requests_total", {{"reason", "x"}}), 1);
  EXPECT_TRUE(std::isnan(m.value("t_requests_total", {{"reason", "y"}})));
  EXPECT_NE(error_of([&] { m.add("t_undeclared_total"); }).find("not declared"), std::string::npos);
}

TEST(ServeMetrics, EveryServeMetricIsExposedBeforeItsFirstEvent) {
  Metrics m;
  declare_serve_metrics(m);
  const std::string t = m.render();
  for (const char* name : {"ich_serve_connections_total{outcome=\"not_dicom\"} 0",
                           "ich_serve_associations_rejected_total{reason=\"calling_aet\"} 0",
                           "ich_serve_associations_accepted_total 0", "ich_serve_instances_received_total 0",
                           "ich_serve_studies{phase=\"stable\"} 0", "ich_serve_latency_seconds_count 0"})
    EXPECT_NE(t.find(name), std::string::npos) << name;
}

}  // namespace
}  // namespace ich
