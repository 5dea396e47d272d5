// Unit tests: the engine's checks of untrusted input (issue 12):
// src/core/url_host.hpp, src/core/json_numbers.hpp and saturating_delay of
// src/core/timer_delay.hpp.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include <boost/json.hpp>

#include "src/core/json_numbers.hpp"
#include "src/core/timer_delay.hpp"
#include "src/core/url_host.hpp"

using namespace aico;
namespace json = boost::json;

TEST(url_host, accepts_names_ipv4_and_ipv6) {
  std::string why;
  for (auto h : {"localhost", "127.0.0.1", "my-host.example.org", "a_b.local",
                 "x"})
    EXPECT_TRUE(valid_url_host(h, false, why)) << h << ": " << why;
  for (auto h : {"::1", "fe80::1", "::ffff:127.0.0.1", "2001:DB8::A"})
    EXPECT_TRUE(valid_url_host(h, true, why)) << h << ": " << why;
}

TEST(url_host, refuses_what_cannot_be_a_host_with_a_sentence) {
  struct bad {
    std::string host;
    bool bracketed;
    const char* says;
  };
  for (auto& b : {bad{"", false, "no host"},
                  bad{"exa\r\nmple", false, "line break"},
                  bad{"a\nb", false, "line break"},
                  bad{"a\tb", false, "control character"},
                  bad{std::string{"a\0b", 3}, false, "control character"},
                  bad{"a\x7f", false, "control character"},
                  bad{"a b", false, "space"},
                  bad{"h\xc3\xa9", false, "non-ASCII"},
                  bad{"a/b", false, "invalid character '/'"},
                  bad{"a%0d", false, "invalid character '%'"},
                  bad{"a..b", false, "empty label"},
                  bad{std::string(64, 'a'), false, "longer than 63"},
                  bad{std::string(254, 'a'), false, "longer than 253"},
                  bad{"example.org", true, "not an IPv6"},
                  bad{"::1%eth0", true, "invalid character"}}) {
    std::string why;
    EXPECT_FALSE(valid_url_host(b.host, b.bracketed, why)) << b.host;
    EXPECT_NE(why.find(b.says), std::string::npos) << b.host << ": " << why;
    for (char c : why)
      EXPECT_GE(static_cast<unsigned char>(c), 0x20u);
  }
}

TEST(url_host, authority_of_absolute_urls) {
  std::string why;
  EXPECT_TRUE(valid_url_authority("http://127.0.0.1:8771", why)) << why;
  EXPECT_TRUE(valid_url_authority("https://gw.example.org/api?x#y", why));
  EXPECT_TRUE(valid_url_authority("http://[::1]:8771/", why)) << why;
  EXPECT_TRUE(valid_url_authority("http://user@host:1", why)) << why;
  EXPECT_FALSE(valid_url_authority("127.0.0.1:8771", why));
  EXPECT_FALSE(valid_url_authority("http://host\r\n:80/", why));
  EXPECT_NE(why.find("line break"), std::string::npos) << why;
  EXPECT_FALSE(valid_url_authority("http://host:0/", why));
  EXPECT_FALSE(valid_url_authority("http://host:65536/", why));
  EXPECT_FALSE(valid_url_authority("http://host:99999999999999999999/", why));
  EXPECT_FALSE(valid_url_authority("http://host:/", why));
  EXPECT_FALSE(valid_url_authority("http://[::1/", why));
  EXPECT_FALSE(valid_url_authority("http://[::1]x/", why));
}

TEST(json_numbers, all_finite_finds_infinities_at_any_depth) {
  EXPECT_TRUE(all_finite(json::parse(R"({"a":[1,2.5,{"b":-1e300}],"c":null})")));
  EXPECT_FALSE(all_finite(json::parse("1e400")));
  EXPECT_FALSE(all_finite(json::parse(R"({"a":[1,[2,{"b":-1e3096}]]})")));
  json::value nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(all_finite(json::array{1, nan}));
  // deep nesting: no recursion
  json::value deep = 1.0 / 0.0;
  for (int i = 0; i < 100000; ++i)
    deep = json::array{std::move(deep)};
  EXPECT_FALSE(all_finite(deep));
}

TEST(json_numbers, double_to_int64_never_casts_out_of_range) {
  constexpr auto lo = std::numeric_limits<int64_t>::min();
  constexpr auto hi = std::numeric_limits<int64_t>::max();
  int64_t out = 7;
  // what a parser makes of -1e3096 and 1e400 (the literals themselves would
  // not compile without a -Woverflow warning)
  constexpr auto inf = std::numeric_limits<double>::infinity();
  EXPECT_FALSE(double_to_int64(-inf, lo, hi, out));
  EXPECT_FALSE(double_to_int64(inf, lo, hi, out));
  EXPECT_FALSE(double_to_int64(std::numeric_limits<double>::quiet_NaN(), lo,
                               hi, out));
  EXPECT_FALSE(double_to_int64(9223372036854775808.0, lo, hi, out)); // 2^63
  EXPECT_FALSE(double_to_int64(1e19, lo, hi, out));
  EXPECT_FALSE(double_to_int64(2.5, lo, hi, out));
  EXPECT_FALSE(double_to_int64(-1, 0, hi, out));
  EXPECT_FALSE(double_to_int64(3e9, -2147483648LL, 2147483647LL, out));
  EXPECT_EQ(out, 7); // untouched
  EXPECT_TRUE(double_to_int64(-9223372036854775808.0, lo, hi, out));
  EXPECT_EQ(out, lo);
  EXPECT_TRUE(double_to_int64(42.0, 0, 100, out));
  EXPECT_EQ(out, 42);
}

TEST(timer_delay, saturating_delay_never_overflows) {
  using namespace std::chrono_literals;
  bool capped = false;
  EXPECT_EQ(saturating_delay(1.5, &capped), caf::timespan{1500ms});
  EXPECT_FALSE(capped);
  EXPECT_EQ(saturating_delay(-5, &capped), caf::timespan{0});
  EXPECT_EQ(saturating_delay(std::numeric_limits<double>::quiet_NaN()),
            caf::timespan{0});
  // 9.2e18 s used to be cast to nanoseconds: undefined, in practice negative
  EXPECT_EQ(saturating_delay(9.2e18, &capped), max_timer_delay);
  EXPECT_TRUE(capped);
  EXPECT_EQ(saturating_delay(1.0 / 0.0, &capped), max_timer_delay);
  EXPECT_TRUE(capped);
  EXPECT_EQ(saturating_delay(86400.0, &capped), max_timer_delay);
  EXPECT_FALSE(capped); // exactly a day is not shortened
}
