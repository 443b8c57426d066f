// The host tests' one assertion: counts, and on failure says where, without stopping.
#pragma once

#include <cstdio>

static int failures = 0;
static int checks = 0;

#define CHECK(condition)                                                             \
  do {                                                                               \
    ++checks;                                                                        \
    if (!(condition)) {                                                              \
      ++failures;                                                                    \
      std::fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #condition); \
    }                                                                                \
  } while (0)
