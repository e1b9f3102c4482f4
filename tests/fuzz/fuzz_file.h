// fuzz_file.h: the readers that take a path get the fuzzer's bytes through
// a file in memory (/dev/shm when present), one per process.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

inline std::string fuzz_file(const uint8_t* data, size_t size, const char* ext) {
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/ich_fuzz_" +
                                  std::to_string(getpid()) + ext;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), long(size));
  return path;
}
