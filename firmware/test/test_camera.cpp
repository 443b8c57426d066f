// Host tests of the camera board's portable core: `make -C firmware test`.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "camera_core.h"
#include "protocol.h"

using namespace facelift;

#include "check.h"

static std::vector<std::string> split(const std::string& line, char separator) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, separator)) fields.push_back(field);
  if (!line.empty() && line.back() == separator) fields.push_back("");
  return fields;
}

static std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    bytes.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

// The vectors the Rust server checks too (src/kiosk.rs): each signature computed whole and
// streamed in uneven pieces, and the burst built from its frames.
static void camera_messages_match_the_shared_vectors(const char* path) {
  std::ifstream file(path);
  CHECK(file.good());
  std::string line;
  int signatures = 0, bursts = 0;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = split(line, '\t');
    if (f.size() == 3 && f[0] == "burst") {
      std::vector<std::vector<uint8_t>> frames;
      for (const std::string& hex : split(f[1], ',')) frames.push_back(from_hex(hex));
      CHECK(join_burst(frames) == from_hex(f[2]));
      ++bursts;
      continue;
    }
    CHECK(f.size() == 7);
    if (f.size() != 7) continue;
    int64_t timestamp = 0;
    CHECK(parse_int64(f[3], timestamp));
    std::vector<uint8_t> body = from_hex(f[5]);
    std::string whole(body.begin(), body.end());
    CHECK(hmac_sha256_hex(f[0], signing_string(f[1], f[2], timestamp, f[4], whole)) == f[6]);
    UploadSigner streamed(f[0], f[1], f[2], timestamp, f[4]);
    for (size_t at = 0; at < body.size(); at += 3) {
      streamed.add(body.data() + at, std::min<size_t>(3, body.size() - at));
    }
    CHECK(streamed.hex() == f[6]);
    CHECK(streamed.hex().empty());  // finished once
    ++signatures;
  }
  CHECK(signatures >= 4);
  CHECK(bursts >= 1);
}

static void capture_requests_are_read_strictly() {
  CaptureRequest request;
  CHECK(parse_capture_request(R"({"attempt_id":"k1a2b3","frames":6,"nonce":"c4a11e96e"})",
                              request));
  CHECK(request.attempt_id == "k1a2b3" && request.frames == 6 && request.nonce == "c4a11e96e");
  CHECK(parse_capture_request(R"({ "nonce" : null, "frames" : 1, "attempt_id" : "a-1" })",
                              request));
  CHECK(request.attempt_id == "a-1" && request.frames == 1 && request.nonce.empty());
  CHECK(parse_capture_request(R"({"attempt_id":"x","frames":1})", request));
  // refused, and `request` left as it was
  CaptureRequest before = request;
  const char* refused[] = {
      "",
      "not json",
      R"({"frames":1})",
      R"({"attempt_id":"","frames":1})",
      R"({"attempt_id":"has space","frames":1})",
      R"({"attempt_id":"../../etc","frames":1})",
      R"({"attempt_id":"a","frames":0})",
      R"({"attempt_id":"a","frames":17})",
      R"({"attempt_id":"a","frames":"6"})",
      R"({"attempt_id":"a","frames":1,"nonce":5})",
      R"({"attempt_id":"a\"b","frames":1})",
  };
  for (const char* json : refused) {
    CHECK(!parse_capture_request(json, request));
    CHECK(request.attempt_id == before.attempt_id);
  }
  CHECK(capture_poll_path(25) == "/api/v1/device/capture?wait=25");
  CHECK(frames_path("k1a2b3") == "/api/v1/device/frames?attempt=k1a2b3");
  uint8_t prefix[4];
  burst_length_prefix(0x01020304u, prefix);
  CHECK(prefix[0] == 1 && prefix[1] == 2 && prefix[2] == 3 && prefix[3] == 4);
}

static void the_led_says_what_happened() {
  CHECK(led_for_upload_answer(200, R"({"stage":"booked","lift":"B","floor":7})") ==
        LedMode::Welcome);
  CHECK(led_for_upload_answer(200, R"({"stage":"recognized"})") == LedMode::Welcome);
  CHECK(led_for_upload_answer(200, R"({"stage":"refused","code":"not_recognized"})") ==
        LedMode::Refused);
  CHECK(led_for_upload_answer(409, R"({"error":"no_such_attempt"})") == LedMode::Refused);
  CHECK(led_for_upload_answer(401, R"({"error":"bad_signature"})") == LedMode::Trouble);
  CHECK(led_for_upload_answer(200, "garbage") == LedMode::Refused);
  CHECK(led_on(LedMode::Capturing, 12345));
  CHECK(led_on(LedMode::Welcome, 2999) && !led_on(LedMode::Welcome, 3000));
  CHECK(led_hold_ms(LedMode::Welcome) == 3000 && led_hold_ms(LedMode::Waiting) == 0);
  int flashes = 0;
  bool was_on = false;
  for (uint32_t t = 0; t < 1500; t += 10) {
    bool on = led_on(LedMode::Refused, t);
    if (on && !was_on) ++flashes;
    was_on = on;
  }
  CHECK(flashes == 3);
  CHECK(led_on(LedMode::Waiting, 0) && !led_on(LedMode::Waiting, 500) && led_on(LedMode::Waiting, 2010));
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: test_camera camera_vectors.txt\n");
    return 2;
  }
  camera_messages_match_the_shared_vectors(argv[1]);
  capture_requests_are_read_strictly();
  the_led_says_what_happened();
  std::printf("camera core: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
