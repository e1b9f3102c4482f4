// torch_writer.h: write a state_dict as torch.save writes it (the zip
// serialisation of PyTorch >= 1.6), in C++, so that torch.load reads an ich
// model and torchvision's module takes it with load_state_dict unchanged.
//
// The archive (ZIP, every entry stored, each entry's data aligned to 64
// bytes by padding in the local header's extra field as torch.save does):
//   archive/data.pkl    the pickle (protocol 2) of an OrderedDict name ->
//                       torch._utils._rebuild_tensor_v2(storage, offset 0,
//                       size, contiguous stride, False, OrderedDict()),
//                       each storage a persistent id
//                       ('storage', torch.FloatStorage | DoubleStorage |
//                       LongStorage, key, 'cpu', numel)
//   archive/data/<key>  each tensor's bytes, little-endian, key = its index
//   archive/byteorder   "little"
//   archive/version     "3\n"
// torch_checkpoint.h reads it back (tests/test_weights.cpp); PyTorch's own
// torch.load is the check that matters (tests/export_check.py).
#pragma once
#include <string>

#include "weights/weights_file.h"

namespace ich {

// float32, float64 and int64 tensors, any device (copied to the host);
// written atomically. Throws ich::Error naming the path or the entry.
void write_torch_state_dict(const std::string& path, const NamedTensors& tensors);
std::string torch_state_dict_bytes(const NamedTensors& tensors);

}  // namespace ich
