// facelift camera board for an ESP32-CAM (AI-Thinker) or ESP-EYE: waits for the server's
// capture request (a signed long poll), takes the picture, or a burst for a live login, and
// uploads it signed with the board's secret; a status LED says what happened.
// The logic lives in camera_core.* and ../facelift_lift/protocol.*, which the host tests build
// (make -C firmware test). Build: see ../README.md ("Camera board").

#include <Arduino.h>
#include <HTTPClient.h>
#include <WiFi.h>
#include <esp_camera.h>
#include <esp_random.h>
#include <time.h>

#include <atomic>
#include <vector>

#include "camera_core.h"
#include "config.h"
#include "protocol.h"

using facelift::CaptureRequest;
using facelift::Check;
using facelift::LedMode;

#if defined(CAMERA_MODEL_AI_THINKER)
// the red LED on GPIO 33, lit by LOW (GPIO 4 is the bright flash: not a status light)
static const int kLedPin = 33;
static const bool kLedOnLevel = LOW;
static camera_config_t camera_pins() {
  camera_config_t c = {};
  c.pin_pwdn = 32; c.pin_reset = -1; c.pin_xclk = 0; c.pin_sccb_sda = 26; c.pin_sccb_scl = 27;
  c.pin_d7 = 35; c.pin_d6 = 34; c.pin_d5 = 39; c.pin_d4 = 36;
  c.pin_d3 = 21; c.pin_d2 = 19; c.pin_d1 = 18; c.pin_d0 = 5;
  c.pin_vsync = 25; c.pin_href = 23; c.pin_pclk = 22;
  return c;
}
#elif defined(CAMERA_MODEL_ESP_EYE)
static const int kLedPin = 21;
static const bool kLedOnLevel = HIGH;
static camera_config_t camera_pins() {
  camera_config_t c = {};
  c.pin_pwdn = -1; c.pin_reset = -1; c.pin_xclk = 4; c.pin_sccb_sda = 18; c.pin_sccb_scl = 23;
  c.pin_d7 = 36; c.pin_d6 = 37; c.pin_d5 = 38; c.pin_d4 = 39;
  c.pin_d3 = 35; c.pin_d2 = 14; c.pin_d1 = 13; c.pin_d0 = 34;
  c.pin_vsync = 5; c.pin_href = 27; c.pin_pclk = 25;
  return c;
}
#else
#error "define CAMERA_MODEL_AI_THINKER or CAMERA_MODEL_ESP_EYE in config.h"
#endif

static facelift::Verifier verifier(30);
static std::atomic<LedMode> led_mode{LedMode::Connecting};
static std::atomic<uint32_t> led_since{0};

static void show(LedMode mode) {
  led_mode = mode;
  led_since = millis();
}

// Drives the LED from its mode; a result goes back to "waiting" after its hold time.
static void led_task(void*) {
  for (;;) {
    LedMode mode = led_mode;
    uint32_t elapsed = millis() - led_since;
    uint32_t hold = facelift::led_hold_ms(mode);
    if (hold != 0 && elapsed >= hold) show(LedMode::Waiting);
    digitalWrite(kLedPin, facelift::led_on(mode, elapsed) ? kLedOnLevel : !kLedOnLevel);
    vTaskDelay(pdMS_TO_TICKS(20));
  }
}

static int64_t unix_now() { return static_cast<int64_t>(time(nullptr)); }

static std::string new_nonce() {
  uint8_t bytes[16];
  esp_fill_random(bytes, sizeof bytes);
  return facelift::to_hex(bytes, sizeof bytes);
}

static void add_signature_headers(HTTPClient& http, int64_t timestamp, const std::string& nonce,
                                  const std::string& signature) {
  http.addHeader("X-Facelift-Device", FACELIFT_DEVICE_ID);
  http.addHeader("X-Facelift-Timestamp", String(static_cast<long long>(timestamp)));
  http.addHeader("X-Facelift-Nonce", nonce.c_str());
  http.addHeader("X-Facelift-Signature", signature.c_str());
}

// One signed long poll: true with `out` when the server asked for a capture (and its answer
// was signed by the server for this very poll).
static bool poll_for_capture(CaptureRequest& out) {
  const std::string path = facelift::capture_poll_path(POLL_WAIT_SECS);
  const std::string nonce = new_nonce();
  const int64_t timestamp = unix_now();
  const std::string signature = facelift::hmac_sha256_hex(
      FACELIFT_DEVICE_SECRET, facelift::signing_string("GET", path, timestamp, nonce, ""));
  HTTPClient http;
  http.setTimeout((POLL_WAIT_SECS + 10) * 1000);
  if (!http.begin(String(FACELIFT_SERVER) + path.c_str())) return false;
  add_signature_headers(http, timestamp, nonce, signature);
  const char* wanted[] = {"X-Facelift-Timestamp", "X-Facelift-Nonce", "X-Facelift-Signature"};
  http.collectHeaders(wanted, 3);
  int status = http.GET();
  if (status <= 0) {
    show(LedMode::Trouble);
    http.end();
    delay(1000);
    return false;
  }
  if (led_mode == LedMode::Trouble || led_mode == LedMode::Connecting) show(LedMode::Waiting);
  if (status == 204) {
    http.end();
    return false;
  }
  std::string body = http.getString().c_str();
  Check check = verifier.verify_response(
      FACELIFT_DEVICE_SECRET, status, path, nonce, http.header("X-Facelift-Timestamp").c_str(),
      http.header("X-Facelift-Nonce").c_str(), http.header("X-Facelift-Signature").c_str(), body,
      unix_now());
  http.end();
  if (status != 200 || check != Check::Ok || !facelift::parse_capture_request(body, out)) {
    Serial.printf("capture poll: status %d, %s; ignored\n", status, facelift::check_name(check));
    show(LedMode::Trouble);
    delay(1000);
    return false;
  }
  return true;
}

// The frames asked for, as the upload's body: one JPEG, or a burst (each after its length).
static bool capture(const CaptureRequest& request, std::vector<uint8_t>& body) {
  body.clear();
  for (int i = 0; i < request.frames; ++i) {
    if (i > 0) delay(FRAME_INTERVAL_MS);
    camera_fb_t* frame = esp_camera_fb_get();
    if (frame == nullptr || frame->format != PIXFORMAT_JPEG) {
      if (frame != nullptr) esp_camera_fb_return(frame);
      return false;
    }
    if (request.frames > 1) {
      uint8_t prefix[4];
      facelift::burst_length_prefix(static_cast<uint32_t>(frame->len), prefix);
      body.insert(body.end(), prefix, prefix + 4);
    }
    body.insert(body.end(), frame->buf, frame->buf + frame->len);
    esp_camera_fb_return(frame);
  }
  return true;
}

static void upload(const CaptureRequest& request, const std::vector<uint8_t>& body) {
  const std::string path = facelift::frames_path(request.attempt_id);
  const std::string nonce = new_nonce();
  const int64_t timestamp = unix_now();
  facelift::UploadSigner signer(FACELIFT_DEVICE_SECRET, "POST", path, timestamp, nonce);
  signer.add(body.data(), body.size());
  const std::string signature = signer.hex();
  HTTPClient http;
  http.setTimeout(30000);
  if (!http.begin(String(FACELIFT_SERVER) + path.c_str())) {
    show(LedMode::Trouble);
    return;
  }
  add_signature_headers(http, timestamp, nonce, signature);
  http.addHeader("Content-Type",
                 request.frames > 1 ? "application/x-facelift-burst" : "image/jpeg");
  int status = http.POST(const_cast<uint8_t*>(body.data()), body.size());
  std::string answer = status > 0 ? http.getString().c_str() : "";
  http.end();
  Serial.printf("upload of %u bytes: status %d %s\n", static_cast<unsigned>(body.size()), status,
                answer.c_str());
  show(status > 0 ? facelift::led_for_upload_answer(status, answer) : LedMode::Trouble);
}

void setup() {
  Serial.begin(115200);
  pinMode(kLedPin, OUTPUT);
  xTaskCreate(led_task, "led", 2048, nullptr, 1, nullptr);

  camera_config_t config = camera_pins();
  config.ledc_channel = LEDC_CHANNEL_0;
  config.ledc_timer = LEDC_TIMER_0;
  config.xclk_freq_hz = 20000000;
  config.pixel_format = PIXFORMAT_JPEG;
  config.frame_size = FRAMESIZE_VGA;
  config.jpeg_quality = JPEG_QUALITY;
  config.fb_count = psramFound() ? 2 : 1;
  config.fb_location = psramFound() ? CAMERA_FB_IN_PSRAM : CAMERA_FB_IN_DRAM;
  config.grab_mode = CAMERA_GRAB_LATEST;  // a capture shows now, not a frame queued earlier
  if (esp_camera_init(&config) != ESP_OK) {
    Serial.println("camera init failed");
    show(LedMode::Trouble);
    for (;;) delay(1000);
  }

  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(250);
  configTime(0, 0, NTP_SERVER);
  while (unix_now() < 1700000000) delay(250);  // no signing before the clock is right
  Serial.printf("camera %s ready at %s\n", FACELIFT_DEVICE_ID, WiFi.localIP().toString().c_str());
  show(LedMode::Waiting);
}

void loop() {
  if (WiFi.status() != WL_CONNECTED) {
    show(LedMode::Connecting);
    WiFi.reconnect();
    delay(1000);
    return;
  }
  CaptureRequest request;
  if (!poll_for_capture(request)) return;
  show(LedMode::Capturing);
  std::vector<uint8_t> body;
  if (!capture(request, body)) {
    Serial.println("capture failed");
    show(LedMode::Trouble);
    return;
  }
  upload(request, body);
}
