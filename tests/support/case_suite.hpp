// One value-parameterized suite over a list of named cases: the class, its single test and the
// instantiation "BadParams/<Suite>.<Test>/<case name>", declared once for every bad-parameter list.
#pragma once

#include <iterator>
#include <string>
#include <type_traits>

#include <gtest/gtest.h>

/// Declares `Suite` over the elements of `cases` (each with a `name`), and its test `Test`, whose
/// body is the remaining arguments, run once per case on `GetParam()`. `cases` must be declared
/// before this line.
#define CONTRASTIVE_BAD_PARAMS_SUITE(Suite, Test, cases, ...)                                   \
  class Suite : public ::testing::TestWithParam<std::decay_t<decltype(*std::begin(cases))>> {}; \
  TEST_P(Suite, Test) {                                                                         \
    __VA_ARGS__;                                                                                \
  }                                                                                             \
  INSTANTIATE_TEST_SUITE_P(BadParams, Suite, ::testing::ValuesIn(cases),                        \
                           [](const ::testing::TestParamInfo<Suite::ParamType>& info) {         \
                             return std::string(info.param.name);                               \
                           })
