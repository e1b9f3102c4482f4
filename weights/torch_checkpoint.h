// torch_checkpoint.h: read a PyTorch checkpoint (a state_dict saved with
// torch.save) in C++, without Python.
//
// Both serialisations are read:
//   - zip (PyTorch >= 1.6): an archive "<name>/data.pkl" + "<name>/data/<key>"
//   - legacy (before 1.6, or _use_new_zipfile_serialization=False): a magic
//     number, a protocol version and system info, each pickled, then the
//     object's pickle, then the pickled list of storage keys, then each
//     storage as an int64 element count followed by its raw bytes.
// The object may be a state_dict (a dict or OrderedDict of tensors), or a
// dict that holds one under "state_dict", "model" or "model_state_dict"; a
// "module." prefix (DataParallel) on every name is removed. Tensors are
// rebuilt from torch._utils._rebuild_tensor_v2 (any strides) and
// _rebuild_parameter. Float, double, half and bfloat16 storages become
// float32/float64; long, int, short, char and bool become int64; byte
// stays uint8. Anything else is an ich::Error naming the file and the entry.
#pragma once
#include <string>

#include "weights/weights_file.h"

namespace ich {

struct TorchCheckpoint {
  std::string format;  // "zip" or "legacy"
  NamedTensors tensors;
};

TorchCheckpoint read_torch_checkpoint(const std::string& path);
TorchCheckpoint parse_torch_checkpoint(const std::string& bytes, const std::string& name);

}  // namespace ich
