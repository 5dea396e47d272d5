// The peer's Python-compatible JSON text (pure logic, no sockets): the bytes
// a client sees from the real backend come from Python's json module.
#include <gtest/gtest.h>

#include "aico_peer/pyjson.hpp"

namespace aico::peer {
namespace {

TEST(PyJson, FloatsAreWrittenAsPythonReprWritesThem) {
  EXPECT_EQ(py_float(1.5), "1.5");
  EXPECT_EQ(py_float(100.0), "100.0");
  EXPECT_EQ(py_float(0.0), "0.0");
  EXPECT_EQ(py_float(-2.25), "-2.25");
  EXPECT_EQ(py_float(1764840000.123), "1764840000.123");
  EXPECT_EQ(py_float(0.0001), "0.0001");
  EXPECT_EQ(py_float(0.00001), "1e-05");
  EXPECT_EQ(py_float(1.25e-7), "1.25e-07");
  EXPECT_EQ(py_float(1e16), "1e+16");
  EXPECT_EQ(py_float(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(py_float(0.1 + 0.2), "0.30000000000000004");
}

TEST(PyJson, SeparatorsAndEnsureAscii) {
  json::object o{{"type", "welcome"}, {"n", 1}, {"l", json::array{1, 2}}};
  EXPECT_EQ(py_dumps(o, {true, true}), R"({"type":"welcome","n":1,"l":[1,2]})");
  EXPECT_EQ(py_dumps(o, {false, true}),
            R"({"type": "welcome", "n": 1, "l": [1, 2]})");
  json::value s = "h\xC3\xA9 \xF0\x9F\x98\x80 \x7F \x01 \"q\" \\ \n";
  EXPECT_EQ(py_dumps(s, {true, true}),
            R"("h\u00e9 \ud83d\ude00 \u007f \u0001 \"q\" \\ \n")");
  EXPECT_EQ(py_dumps(s, {true, false}),
            "\"h\xC3\xA9 \xF0\x9F\x98\x80 \x7F \\u0001 \\\"q\\\" \\\\ \\n\"");
}

TEST(PyJson, TruthinessFollowsPython) {
  EXPECT_FALSE(py_truthy(json::value(nullptr)));
  EXPECT_FALSE(py_truthy(json::value(0)));
  EXPECT_FALSE(py_truthy(json::value("")));
  EXPECT_FALSE(py_truthy(json::array{}));
  EXPECT_TRUE(py_truthy(json::value(true)));
  EXPECT_TRUE(py_truthy(json::value("x")));
  EXPECT_TRUE(py_truthy(json::value(2)));
}

} // namespace
} // namespace aico::peer
