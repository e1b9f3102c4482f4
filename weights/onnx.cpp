// onnx.cpp: the ONNX encoder (see onnx.h for the format and its sources).
#include "weights/onnx.h"

#include <cstring>

#include "engine/error.h"
#include "io/atomic_file.h"

namespace ich::onnx {

namespace wire {

void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char(uint8_t(v) | 0x80));
    v >>= 7;
  }
  out.push_back(char(uint8_t(v)));
}
void field_varint(std::string& out, int field, uint64_t v) {
  varint(out, uint64_t(field) << 3 | 0);
  varint(out, v);
}
void field_bytes(std::string& out, int field, const std::string& bytes) {
  varint(out, uint64_t(field) << 3 | 2);
  varint(out, bytes.size());
  out += bytes;
}
void field_fixed32(std::string& out, int field, uint32_t bits) {
  varint(out, uint64_t(field) << 3 | 5);
  for (int k = 0; k < 4; ++k) out.push_back(char(uint8_t(bits >> (8 * k))));
}

}  // namespace wire

using namespace wire;

Attr attr_int(const std::string& name, int64_t v) {
  Attr a;
  a.kind = Attr::Int, a.name = name, a.i = v;
  return a;
}
Attr attr_ints(const std::string& name, std::vector<int64_t> v) {
  Attr a;
  a.kind = Attr::Ints, a.name = name, a.ints = std::move(v);
  return a;
}
Attr attr_float(const std::string& name, float v) {
  Attr a;
  a.kind = Attr::Float, a.name = name, a.f = v;
  return a;
}
Attr attr_string(const std::string& name, std::string v) {
  Attr a;
  a.kind = Attr::String, a.name = name, a.s = std::move(v);
  return a;
}

namespace {

// AttributeProto: name 1, f 2, i 3, s 4, ints 8, type 20 (FLOAT 1, INT 2,
// STRING 3, INTS 7). int64 values are varints of their two's complement.
std::string encode_attr(const Attr& a) {
  std::string o;
  field_bytes(o, 1, a.name);
  switch (a.kind) {
    case Attr::Float: {
      uint32_t bits;
      std::memcpy(&bits, &a.f, 4);
      field_fixed32(o, 2, bits);
      field_varint(o, 20, 1);
      break;
    }
    case Attr::Int:
      field_varint(o, 3, uint64_t(a.i));
      field_varint(o, 20, 2);
      break;
    case Attr::String:
      field_bytes(o, 4, a.s);
      field_varint(o, 20, 3);
      break;
    case Attr::Ints:
      for (int64_t v : a.ints) field_varint(o, 8, uint64_t(v));  // unpacked: every parser reads it
      field_varint(o, 20, 7);
      break;
  }
  return o;
}

// NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
std::string encode_node(const Node& n) {
  std::string o;
  for (const std::string& s : n.inputs) field_bytes(o, 1, s);
  for (const std::string& s : n.outputs) field_bytes(o, 2, s);
  if (!n.name.empty()) field_bytes(o, 3, n.name);
  field_bytes(o, 4, n.op_type);
  for (const Attr& a : n.attrs) field_bytes(o, 5, encode_attr(a));
  return o;
}

int32_t elem_type_of(DType t, const std::string& name) {
  switch (t) {
    case DType::Float32: return kFloat;
    case DType::Int64: return kInt64;
    default: throw Error(detail::cat("ONNX initializer ", name, ": ", dtype_name(t), " is not written (float32 and int64 are)"));
  }
}

// TensorProto: dims 1, data_type 2, name 8, raw_data 9.
std::string encode_tensor(const std::string& name, const Tensor& t) {
  const Tensor h = t.to(Device::cpu()).contiguous();
  std::string o;
  for (int64_t d : h.shape()) field_varint(o, 1, uint64_t(d));
  field_varint(o, 2, uint64_t(elem_type_of(h.dtype(), name)));
  field_bytes(o, 8, name);
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "raw_data is little-endian");
  field_bytes(o, 9, std::string(static_cast<const char*>(h.raw_data()), size_t(h.numel()) * dtype_size(h.dtype())));
  return o;
}

// ValueInfoProto: name 1, type 2 (TypeProto: tensor_type 1 = {elem_type 1,
// shape 2 = {dim 1 = {dim_value 1 | dim_param 2}}}), doc_string 3.
std::string encode_value_info(const ValueInfo& v) {
  std::string shape;
  for (const Dim& d : v.dims) {
    std::string dim;
    if (d.value >= 0) field_varint(dim, 1, uint64_t(d.value));
    else field_bytes(dim, 2, d.param);
    field_bytes(shape, 1, dim);
  }
  std::string tensor_type;
  field_varint(tensor_type, 1, uint64_t(v.elem_type));
  field_bytes(tensor_type, 2, shape);
  std::string type;
  field_bytes(type, 1, tensor_type);
  std::string o;
  field_bytes(o, 1, v.name);
  field_bytes(o, 2, type);
  if (!v.doc.empty()) field_bytes(o, 3, v.doc);
  return o;
}

}  // namespace

// ModelProto: ir_version 1, producer_name 2, producer_version 3, doc_string
// 6, graph 7, opset_import 8, metadata_props 14. GraphProto: node 1, name 2,
// initializer 5, input 11, output 12.
std::string encode(const Model& m) {
  std::string graph;
  for (const Node& n : m.nodes) field_bytes(graph, 1, encode_node(n));
  field_bytes(graph, 2, m.graph_name);
  for (const auto& [name, t] : m.initializers) field_bytes(graph, 5, encode_tensor(name, t));
  for (const ValueInfo& v : m.inputs) field_bytes(graph, 11, encode_value_info(v));
  for (const ValueInfo& v : m.outputs) field_bytes(graph, 12, encode_value_info(v));
  std::string o;
  field_varint(o, 1, 8);
  field_bytes(o, 2, "ich");
  field_bytes(o, 3, m.producer_version);
  if (!m.doc.empty()) field_bytes(o, 6, m.doc);
  field_bytes(o, 7, graph);
  std::string opset;
  field_bytes(opset, 1, "");
  field_varint(opset, 2, uint64_t(m.opset));
  field_bytes(o, 8, opset);
  for (const auto& [k, v] : m.metadata) {
    std::string e;
    field_bytes(e, 1, k);
    field_bytes(e, 2, v);
    field_bytes(o, 14, e);
  }
  ICH_CHECK(o.size() < (size_t(1) << 31), "ONNX model of ", o.size(), " bytes: over protobuf's 2 GB limit");
  return o;
}

void write_model(const std::string& path, const Model& m) { write_file_atomic(path, encode(m)); }

}  // namespace ich::onnx
