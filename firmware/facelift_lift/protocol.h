// The device protocol (see ../PROTOCOL.md): signing, checking and the message formats.
// Portable C++17: the sketch and the host tests (`make -C firmware test`) build the same code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace facelift {

// HMAC-SHA256 of `text` under `key`, as 64 lowercase hex digits (mbedtls, as on the ESP32).
std::string hmac_sha256_hex(const std::string& key, const std::string& text);

std::string to_hex(const uint8_t* bytes, size_t length);

// The text a request signature covers: method, path with query, timestamp, nonce and body,
// joined by "\n". A response uses its status code instead of the method and the request's nonce.
std::string signing_string(const std::string& method_or_status, const std::string& path,
                           int64_t timestamp, const std::string& nonce, const std::string& body);

// Compares without an early exit, so timing does not tell how much of a signature was right.
bool constant_time_equal(const std::string& a, const std::string& b);

enum class Check { Ok, Unsigned, BadSignature, Stale, Replayed };
const char* check_name(Check check);

// Checks the messages this device receives: signature first, then the time window, then
// replays (a nonce seen within the window).
class Verifier {
 public:
  explicit Verifier(int64_t window_secs = 30) : window_secs_(window_secs) {}

  Check verify_request(const std::string& secret, const std::string& method,
                       const std::string& path, const std::string& timestamp_header,
                       const std::string& nonce, const std::string& signature,
                       const std::string& body, int64_t now);

  // The signed answer to our request that carried `request_nonce`.
  Check verify_response(const std::string& secret, int status, const std::string& path,
                        const std::string& request_nonce, const std::string& timestamp_header,
                        const std::string& nonce_header, const std::string& signature,
                        const std::string& body, int64_t now) const;

 private:
  static constexpr size_t kRemembered = 32;
  struct Seen {
    std::string nonce;
    int64_t timestamp = 0;
  };
  bool within_window(int64_t timestamp, int64_t now) const;
  int64_t window_secs_;
  Seen seen_[kRemembered];
  size_t next_ = 0;
};

// Parses a whole decimal integer ("-12"); false on anything else.
bool parse_int64(const std::string& text, int64_t& out);

// A request id is 1 to 64 letters, digits, '-' or '_'.
bool valid_request_id(const std::string& id);

struct MoveCommand {
  std::string request_id;
  int floor = 0;
};

// {"request_id": "...", "floor": N}, keys in any order, whitespace allowed.
bool parse_move_command(const std::string& json, MoveCommand& out);

// {"device_id":"...","floor":N,"state":"idle","seq":N}
std::string status_json(const std::string& device_id, int floor, const char* state,
                        uint64_t seq);

// USB serial lines: "MOVE <request_id> <floor>" in, "STATUS <floor> <state> <seq>" out.
bool parse_serial_move(const std::string& line, MoveCommand& out);
std::string serial_status(int floor, const char* state, uint64_t seq);

}  // namespace facelift
