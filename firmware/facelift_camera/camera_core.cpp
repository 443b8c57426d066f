#include "camera_core.h"

#include <cctype>
#include <cstring>

#include "mbedtls/md.h"
#include "protocol.h"

namespace facelift {

namespace {

// The JSON reader of a flat object: finds "key": and reads the value after it.
size_t value_start(const std::string& json, const char* key) {
  const std::string quoted = std::string("\"") + key + "\"";
  size_t at = json.find(quoted);
  if (at == std::string::npos) return std::string::npos;
  at += quoted.size();
  while (at < json.size() && std::isspace(static_cast<unsigned char>(json[at]))) ++at;
  if (at >= json.size() || json[at] != ':') return std::string::npos;
  ++at;
  while (at < json.size() && std::isspace(static_cast<unsigned char>(json[at]))) ++at;
  return at < json.size() ? at : std::string::npos;
}

// A string value without escapes (ids and nonces never need them); false otherwise.
bool string_value(const std::string& json, const char* key, std::string& out) {
  size_t at = value_start(json, key);
  if (at == std::string::npos || json[at] != '"') return false;
  size_t end = json.find('"', at + 1);
  if (end == std::string::npos) return false;
  out = json.substr(at + 1, end - at - 1);
  return out.find('\\') == std::string::npos;
}

bool int_value(const std::string& json, const char* key, int64_t& out) {
  size_t at = value_start(json, key);
  if (at == std::string::npos) return false;
  size_t end = at;
  if (end < json.size() && json[end] == '-') ++end;
  while (end < json.size() && std::isdigit(static_cast<unsigned char>(json[end]))) ++end;
  return parse_int64(json.substr(at, end - at), out);
}

bool is_null(const std::string& json, const char* key) {
  size_t at = value_start(json, key);
  return at != std::string::npos && json.compare(at, 4, "null") == 0;
}

}  // namespace

bool parse_capture_request(const std::string& json, CaptureRequest& out) {
  CaptureRequest parsed;
  int64_t frames = 0;
  if (json.empty() || json.front() != '{' || json.back() != '}') return false;
  if (!string_value(json, "attempt_id", parsed.attempt_id)) return false;
  if (!valid_request_id(parsed.attempt_id)) return false;
  if (!int_value(json, "frames", frames) || frames < 1 || frames > kMaxCaptureFrames) {
    return false;
  }
  parsed.frames = static_cast<int>(frames);
  if (value_start(json, "nonce") != std::string::npos && !is_null(json, "nonce") &&
      !string_value(json, "nonce", parsed.nonce)) {
    return false;
  }
  out = parsed;
  return true;
}

std::string capture_poll_path(int wait_secs) {
  return "/api/v1/device/capture?wait=" + std::to_string(wait_secs);
}

std::string frames_path(const std::string& attempt_id) {
  return "/api/v1/device/frames?attempt=" + attempt_id;
}

void burst_length_prefix(uint32_t length, uint8_t out[4]) {
  out[0] = static_cast<uint8_t>(length >> 24);
  out[1] = static_cast<uint8_t>(length >> 16);
  out[2] = static_cast<uint8_t>(length >> 8);
  out[3] = static_cast<uint8_t>(length);
}

std::vector<uint8_t> join_burst(const std::vector<std::vector<uint8_t>>& frames) {
  std::vector<uint8_t> burst;
  for (const auto& frame : frames) {
    uint8_t prefix[4];
    burst_length_prefix(static_cast<uint32_t>(frame.size()), prefix);
    burst.insert(burst.end(), prefix, prefix + 4);
    burst.insert(burst.end(), frame.begin(), frame.end());
  }
  return burst;
}

struct UploadSigner::State {
  mbedtls_md_context_t context;
  bool ok = false;
};

UploadSigner::UploadSigner(const std::string& secret, const std::string& method,
                           const std::string& path, int64_t timestamp, const std::string& nonce)
    : state_(new State) {
  mbedtls_md_init(&state_->context);
  const mbedtls_md_info_t* sha256 = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
  state_->ok = sha256 != nullptr && mbedtls_md_setup(&state_->context, sha256, 1) == 0 &&
               mbedtls_md_hmac_starts(&state_->context,
                                      reinterpret_cast<const unsigned char*>(secret.data()),
                                      secret.size()) == 0;
  // the signed text up to the body: the same head signing_string writes
  const std::string head = signing_string(method, path, timestamp, nonce, "");
  add(reinterpret_cast<const uint8_t*>(head.data()), head.size());
}

UploadSigner::~UploadSigner() {
  mbedtls_md_free(&state_->context);
  delete state_;
}

void UploadSigner::add(const uint8_t* bytes, size_t length) {
  if (state_->ok && length > 0) {
    state_->ok = mbedtls_md_hmac_update(&state_->context, bytes, length) == 0;
  }
}

std::string UploadSigner::hex() {
  uint8_t mac[32] = {0};
  if (!state_->ok || mbedtls_md_hmac_finish(&state_->context, mac) != 0) return std::string();
  state_->ok = false;  // finished: a second call gives nothing rather than a wrong value
  return to_hex(mac, sizeof mac);
}

bool led_on(LedMode mode, uint32_t elapsed_ms) {
  switch (mode) {
    case LedMode::Connecting:
      return (elapsed_ms / 100) % 2 == 0;
    case LedMode::Waiting:
      return elapsed_ms % 2000 < 60;
    case LedMode::Capturing:
      return true;
    case LedMode::Welcome:
      return elapsed_ms < 3000;
    case LedMode::Refused:
      return elapsed_ms < 900 && (elapsed_ms / 150) % 2 == 0;
    case LedMode::Trouble:
      return (elapsed_ms / 1000) % 2 == 0;
  }
  return false;
}

uint32_t led_hold_ms(LedMode mode) {
  switch (mode) {
    case LedMode::Welcome:
      return 3000;
    case LedMode::Refused:
      return 1500;
    default:
      return 0;
  }
}

LedMode led_for_upload_answer(int status, const std::string& json) {
  if (status != 200) return status == 401 ? LedMode::Trouble : LedMode::Refused;
  std::string stage;
  if (!string_value(json, "stage", stage)) return LedMode::Refused;
  if (stage == "booked" || stage == "recognized") return LedMode::Welcome;
  return LedMode::Refused;
}

}  // namespace facelift
