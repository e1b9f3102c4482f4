// pdu.h: the A-ASSOCIATE-RQ checked before DCMTK parses it (PS3.8 9.3.2).
// The receiver reads a new connection's first PDU whole and hands DCMTK
// only what passes: the items nest within their lengths, every presentation
// context has one abstract syntax and at least one transfer syntax, every
// UID is 1-64 bytes, the user information sub-items' inner lengths fit
// them. DCMTK 3.6.7 leaks memory on requests its parser rejects for some of
// these (a presentation context without a transfer syntax leaks its lists,
// a bad extended negotiation sub-item leaks that sub-item; the fuzzer found
// both), so such requests never reach it.
#pragma once
#include <string>

namespace ich {

// Empty when pdu (header included) is a well-formed A-ASSOCIATE-RQ; else
// what is wrong, in words, with the byte offset.
std::string check_associate_rq(const std::string& pdu);

}  // namespace ich
