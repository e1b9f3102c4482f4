// app_main.h: what every executable's main() shares: one error line on
// stderr and a documented exit code, never an uncaught exception.
//
// Exit codes: 0 success; 1 the run failed (the line says why); 2 bad
// command line (CLI11 prints the usage problem).
#pragma once
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <functional>

#include "engine/error.h"

namespace ich {

inline int run_app(const char* name, CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace ich
