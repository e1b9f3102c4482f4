// onnx.h: ONNX models written by our own encoder of protobuf's wire format,
// so that a model leaves ich for ONNX Runtime, OpenVINO, TensorRT or Triton
// without a protobuf library in the product.
//
// The wire format (protobuf's "Encoding" page): a message is a sequence of
// fields, each a key varint (field number << 3 | wire type) and a value;
// wire type 0 is a varint (int32, int64, enum), 2 a length-delimited run of
// bytes (string, bytes, a nested message, a packed repeated scalar), 5 a
// little-endian 32-bit value (float). The field numbers below are onnx.proto's
// (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto,
// ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto,
// StringStringEntryProto).
//
// Initializers are stored as raw_data (little-endian bytes, as ONNX
// specifies for raw_data on every platform). The whole model is encoded in
// memory and written atomically: a model of ResNeXt-101's size (355 MB of
// float32 weights) is far below protobuf's 2 GB limit, checked anyway.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "weights/weights_file.h"

namespace ich::onnx {

// onnx.proto's TensorProto.DataType values we write.
enum ElemType : int32_t { kFloat = 1, kInt32 = 6, kInt64 = 7 };

struct Attr {
  enum Kind { Int, Ints, Float, String } kind = Int;
  std::string name;
  int64_t i = 0;
  std::vector<int64_t> ints;
  float f = 0;
  std::string s;
};
Attr attr_int(const std::string& name, int64_t v);
Attr attr_ints(const std::string& name, std::vector<int64_t> v);
Attr attr_float(const std::string& name, float v);
Attr attr_string(const std::string& name, std::string v);

struct Node {
  std::string op_type;
  std::vector<std::string> inputs, outputs;  // "" for an optional input left out
  std::vector<Attr> attrs;
  std::string name;
};

// A dimension: a fixed size (value >= 0) or a named free one (param).
struct Dim {
  int64_t value = -1;
  std::string param;
};
struct ValueInfo {
  std::string name;
  int32_t elem_type = kFloat;
  std::vector<Dim> dims;
  std::string doc;
};

struct Model {
  int64_t opset = 17;  // the default ("") domain's operator set
  std::string producer_version, graph_name, doc;
  std::vector<std::pair<std::string, std::string>> metadata;  // ModelProto.metadata_props
  std::vector<ValueInfo> inputs, outputs;
  std::vector<Node> nodes;
  NamedTensors initializers;  // float32, int32 or int64, any device (copied to the host)
};

// The model's bytes (ModelProto). IR version 8 (the one of opset 17).
std::string encode(const Model& m);
// encode(), written atomically to path; throws ich::Error naming it.
void write_model(const std::string& path, const Model& m);

// The protobuf encoder underneath, for tests and for other messages: each
// call appends one field to `out`.
namespace wire {
void varint(std::string& out, uint64_t v);
void field_varint(std::string& out, int field, uint64_t v);
void field_bytes(std::string& out, int field, const std::string& bytes);
void field_fixed32(std::string& out, int field, uint32_t bits);
}  // namespace wire

}  // namespace ich::onnx
