#include "protocol.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "mbedtls/md.h"

namespace facelift {

std::string to_hex(const uint8_t* bytes, size_t length) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(length * 2);
  for (size_t i = 0; i < length; ++i) {
    out.push_back(kDigits[bytes[i] >> 4]);
    out.push_back(kDigits[bytes[i] & 0x0f]);
  }
  return out;
}

std::string hmac_sha256_hex(const std::string& key, const std::string& text) {
  uint8_t mac[32] = {0};
  const mbedtls_md_info_t* sha256 = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
  if (sha256 == nullptr ||
      mbedtls_md_hmac(sha256, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                      reinterpret_cast<const unsigned char*>(text.data()), text.size(),
                      mac) != 0) {
    return std::string();  // never equal to a real signature
  }
  return to_hex(mac, sizeof mac);
}

std::string signing_string(const std::string& method_or_status, const std::string& path,
                           int64_t timestamp, const std::string& nonce, const std::string& body) {
  std::string text;
  text.reserve(method_or_status.size() + path.size() + nonce.size() + body.size() + 32);
  text += method_or_status;
  text += '\n';
  text += path;
  text += '\n';
  text += std::to_string(timestamp);
  text += '\n';
  text += nonce;
  text += '\n';
  text += body;
  return text;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return difference == 0;
}

const char* check_name(Check check) {
  switch (check) {
    case Check::Ok: return "ok";
    case Check::Unsigned: return "bad_signature";
    case Check::BadSignature: return "bad_signature";
    case Check::Stale: return "stale";
    case Check::Replayed: return "replayed";
  }
  return "bad_signature";
}

bool parse_int64(const std::string& text, int64_t& out) {
  if (text.empty() || text.size() > 20) return false;
  size_t i = (text[0] == '-') ? 1 : 0;
  if (i == text.size()) return false;
  int64_t value = 0;
  for (; i < text.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
    value = value * 10 + (text[i] - '0');
  }
  out = (text[0] == '-') ? -value : value;
  return true;
}

bool Verifier::within_window(int64_t timestamp, int64_t now) const {
  int64_t skew = timestamp - now;
  return skew <= window_secs_ && skew >= -window_secs_;
}

Check Verifier::verify_request(const std::string& secret, const std::string& method,
                               const std::string& path, const std::string& timestamp_header,
                               const std::string& nonce, const std::string& signature,
                               const std::string& body, int64_t now) {
  int64_t timestamp = 0;
  if (timestamp_header.empty() || nonce.empty() || signature.empty()) return Check::Unsigned;
  if (!parse_int64(timestamp_header, timestamp) || nonce.size() > 64) return Check::BadSignature;
  std::string expected =
      hmac_sha256_hex(secret, signing_string(method, path, timestamp, nonce, body));
  if (!constant_time_equal(expected, signature)) return Check::BadSignature;
  if (!within_window(timestamp, now)) return Check::Stale;
  for (const Seen& seen : seen_) {
    if (!seen.nonce.empty() && seen.nonce == nonce && within_window(seen.timestamp, now)) {
      return Check::Replayed;
    }
  }
  // the oldest entry makes room; 32 messages in one window is far more than the server sends
  seen_[next_] = Seen{nonce, timestamp};
  next_ = (next_ + 1) % kRemembered;
  return Check::Ok;
}

Check Verifier::verify_response(const std::string& secret, int status, const std::string& path,
                                const std::string& request_nonce,
                                const std::string& timestamp_header,
                                const std::string& nonce_header, const std::string& signature,
                                const std::string& body, int64_t now) const {
  int64_t timestamp = 0;
  if (timestamp_header.empty() || signature.empty()) return Check::Unsigned;
  if (nonce_header != request_nonce) return Check::Replayed;
  if (!parse_int64(timestamp_header, timestamp)) return Check::BadSignature;
  std::string expected = hmac_sha256_hex(
      secret, signing_string(std::to_string(status), path, timestamp, request_nonce, body));
  if (!constant_time_equal(expected, signature)) return Check::BadSignature;
  if (!within_window(timestamp, now)) return Check::Stale;
  return Check::Ok;
}

bool valid_request_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
  }
  return true;
}

namespace {

// A tiny scanner for the one flat JSON object the device receives.
struct Scanner {
  const std::string& text;
  size_t at = 0;

  void skip_space() {
    while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at]))) ++at;
  }
  bool take(char c) {
    skip_space();
    if (at < text.size() && text[at] == c) {
      ++at;
      return true;
    }
    return false;
  }
  // A string without escapes: request ids and keys never need them.
  bool string(std::string& out) {
    if (!take('"')) return false;
    size_t end = text.find('"', at);
    if (end == std::string::npos) return false;
    out = text.substr(at, end - at);
    if (out.find('\\') != std::string::npos) return false;
    at = end + 1;
    return true;
  }
  bool integer(int64_t& out) {
    skip_space();
    size_t start = at;
    if (at < text.size() && text[at] == '-') ++at;
    while (at < text.size() && std::isdigit(static_cast<unsigned char>(text[at]))) ++at;
    return parse_int64(text.substr(start, at - start), out);
  }
};

}  // namespace

bool parse_move_command(const std::string& json, MoveCommand& out) {
  Scanner scan{json};
  bool have_id = false, have_floor = false;
  MoveCommand command;
  if (!scan.take('{')) return false;
  if (!scan.take('}')) {
    do {
      std::string key;
      if (!scan.string(key) || !scan.take(':')) return false;
      if (key == "request_id") {
        if (!scan.string(command.request_id)) return false;
        have_id = true;
      } else if (key == "floor") {
        int64_t floor = 0;
        if (!scan.integer(floor) || floor < -1000 || floor > 1000) return false;
        command.floor = static_cast<int>(floor);
        have_floor = true;
      } else {
        return false;  // the command has exactly these two fields
      }
    } while (scan.take(','));
    if (!scan.take('}')) return false;
  }
  scan.skip_space();
  if (scan.at != json.size() || !have_id || !have_floor) return false;
  if (!valid_request_id(command.request_id)) return false;
  out = command;
  return true;
}

std::string status_json(const std::string& device_id, int floor, const char* state,
                        uint64_t seq) {
  char tail[96];
  std::snprintf(tail, sizeof tail, "\",\"floor\":%d,\"state\":\"%s\",\"seq\":%llu}", floor, state,
                static_cast<unsigned long long>(seq));
  return "{\"device_id\":\"" + device_id + tail;
}

bool parse_serial_move(const std::string& line, MoveCommand& out) {
  // exactly three words: MOVE <id> <floor>
  std::string words[4];
  size_t count = 0, at = 0;
  while (at < line.size() && count < 4) {
    while (at < line.size() && line[at] == ' ') ++at;
    size_t start = at;
    while (at < line.size() && line[at] != ' ' && line[at] != '\r') ++at;
    if (at > start) words[count++] = line.substr(start, at - start);
    if (at < line.size() && line[at] == '\r') break;
  }
  int64_t floor = 0;
  if (count != 3 || words[0] != "MOVE" || !valid_request_id(words[1]) ||
      !parse_int64(words[2], floor) || floor < -1000 || floor > 1000) {
    return false;
  }
  out.request_id = words[1];
  out.floor = static_cast<int>(floor);
  return true;
}

std::string serial_status(int floor, const char* state, uint64_t seq) {
  char line[64];
  std::snprintf(line, sizeof line, "STATUS %d %s %llu", floor, state,
                static_cast<unsigned long long>(seq));
  return line;
}

}  // namespace facelift
