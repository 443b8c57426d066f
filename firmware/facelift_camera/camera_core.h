// The camera board's portable core (see ../PROTOCOL.md, "Camera boards"): the capture request
// it long-polls for, the burst it uploads, the upload's signature computed over the frames as
// they come (no second copy of a JPEG in memory), and the status LED. Portable C++17: the
// sketch and the host tests (`make -C firmware test`) build the same code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace facelift {

// The most frames a capture request may ask for (the server asks 1, or 6 for a live login).
constexpr int kMaxCaptureFrames = 16;

struct CaptureRequest {
  std::string attempt_id;
  int frames = 1;
  std::string nonce;  // the challenge a burst answers; empty for a single frame
};

// {"attempt_id":"...","frames":N,"nonce":"..."|null}, keys in any order. False on anything
// else: an attempt id that is not 1 to 64 letters, digits, '-' or '_', or frames outside
// 1..kMaxCaptureFrames.
bool parse_capture_request(const std::string& json, CaptureRequest& out);

// "/api/v1/device/capture?wait=25"
std::string capture_poll_path(int wait_secs);
// "/api/v1/device/frames?attempt=ID"
std::string frames_path(const std::string& attempt_id);

// The 4-byte big-endian length that precedes each frame of a burst.
void burst_length_prefix(uint32_t length, uint8_t out[4]);
// A whole burst in memory (the host tests; the sketch streams it instead).
std::vector<uint8_t> join_burst(const std::vector<std::vector<uint8_t>>& frames);

// HMAC-SHA256 of a request whose body arrives in pieces: `begin` with the head of the signed
// text (method, path, timestamp, nonce), `add` each piece of the body, `hex` for the
// signature. The same value as hmac_sha256_hex over signing_string(...) of the whole body.
class UploadSigner {
 public:
  UploadSigner(const std::string& secret, const std::string& method, const std::string& path,
               int64_t timestamp, const std::string& nonce);
  ~UploadSigner();
  UploadSigner(const UploadSigner&) = delete;
  UploadSigner& operator=(const UploadSigner&) = delete;
  void add(const uint8_t* bytes, size_t length);
  // The signature; empty if the HMAC could not be computed (never a real signature).
  std::string hex();

 private:
  struct State;
  State* state_;
};

// What the status LED says.
enum class LedMode {
  Connecting,  // no Wi-Fi or no time yet: fast blink
  Waiting,     // polling, nothing asked: a short blink every 2 s (alive)
  Capturing,   // taking and sending the picture: on
  Welcome,     // recognised (and booked): on for 3 s, then back to Waiting
  Refused,     // not let in, or the server refused the upload: three quick blinks
  Trouble,     // the server unreachable or its answers not trusted: slow blink
};

// The LED's level `elapsed_ms` into `mode`.
bool led_on(LedMode mode, uint32_t elapsed_ms);

// How long a result is shown before the LED goes back to Waiting (0: it stays).
uint32_t led_hold_ms(LedMode mode);

// The mode for the server's answer to an upload: its HTTP status and the kiosk event it
// carries ({"stage":"booked"|"recognized"|"refused"|...}).
LedMode led_for_upload_answer(int status, const std::string& json);

}  // namespace facelift
