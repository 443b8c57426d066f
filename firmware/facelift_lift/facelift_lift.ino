// facelift lift controller for an ESP32: drives the motor relays from floor commands signed
// by the facelift server, and reports every floor change and a heartbeat, signed too.
// The logic lives in lift_core.* and protocol.*, which the host tests build (make -C firmware test).
//
// Tasks: `control` (5 ms, highest priority) reads the sensors and sets the motor outputs, so a
// slow network never delays a stop; `loop` sends reports and serves push commands; `poll`
// long-polls the server in pull mode.

#include <Arduino.h>
#include <HTTPClient.h>
#include <WebServer.h>
#include <WiFi.h>
#include <esp_random.h>
#include <time.h>

#include <mutex>

#include "config.h"
#include "lift_core.h"
#include "protocol.h"

using facelift::Check;
using facelift::LiftCore;
using facelift::MoveCommand;
using facelift::MoveResult;

static const int kFloors = HIGHEST_FLOOR - LOWEST_FLOOR + 1;
static_assert(sizeof(FLOOR_SENSOR_PINS) / sizeof(FLOOR_SENSOR_PINS[0]) == kFloors,
              "one sensor pin per floor");

static LiftCore core(LOWEST_FLOOR, HIGHEST_FLOOR, LOWEST_FLOOR, DEBOUNCE_MS, FLOOR_TRAVEL_MS);
static std::mutex core_lock;
static facelift::Verifier verifier(30);
static uint64_t seq = 0;
static uint32_t last_report_ms = 0;

#if FACELIFT_LINK == 0
static WebServer server(80);
#endif

static int64_t unix_now() { return static_cast<int64_t>(time(nullptr)); }

static std::string new_nonce() {
  uint8_t bytes[16];
  esp_fill_random(bytes, sizeof bytes);
  return facelift::to_hex(bytes, sizeof bytes);
}

static MoveResult accept_command(const MoveCommand& command) {
  std::lock_guard<std::mutex> guard(core_lock);
  return core.request_move(command.request_id, command.floor, millis());
}

static void control_task(void*) {
  bool sensors[facelift::LiftCore::kMaxFloors] = {false};
  for (;;) {
    {
      std::lock_guard<std::mutex> guard(core_lock);
      for (int i = 0; i < kFloors; ++i) sensors[i] = digitalRead(FLOOR_SENSOR_PINS[i]) == LOW;
      bool stop = digitalRead(EMERGENCY_STOP_PIN) == HIGH;
      core.update_inputs(sensors, stop, millis());
      if (digitalRead(RESET_BUTTON_PIN) == LOW) core.reset_fault(millis());
      facelift::MotorOutputs out = core.outputs();
      digitalWrite(MOTOR_UP_PIN, out.up ? HIGH : LOW);
      digitalWrite(MOTOR_DOWN_PIN, out.down ? HIGH : LOW);
    }
    vTaskDelay(pdMS_TO_TICKS(5));
  }
}

#if FACELIFT_LINK == 2
static bool send_report(int floor, const char* state) {
  Serial.println(facelift::serial_status(floor, state, ++seq).c_str());
  return true;
}
#else
// Answers whether the server took it.
static bool send_report(int floor, const char* state) {
  const char* path = "/api/v1/device/status";
  std::string body = facelift::status_json(FACELIFT_DEVICE_ID, floor, state, ++seq);
  int64_t now = unix_now();
  std::string nonce = new_nonce();
  std::string signature = facelift::hmac_sha256_hex(
      FACELIFT_DEVICE_SECRET, facelift::signing_string("POST", path, now, nonce, body));
  HTTPClient http;
  http.setTimeout(2000);
  http.begin(String(FACELIFT_SERVER) + path);
  http.addHeader("Content-Type", "application/json");
  http.addHeader("X-Facelift-Device", FACELIFT_DEVICE_ID);
  http.addHeader("X-Facelift-Timestamp", String(static_cast<long long>(now)));
  http.addHeader("X-Facelift-Nonce", nonce.c_str());
  http.addHeader("X-Facelift-Signature", signature.c_str());
  int status = http.POST(reinterpret_cast<uint8_t*>(const_cast<char*>(body.data())), body.size());
  if (status != 200) Serial.printf("report refused: %d\n", status);
  http.end();
  return status == 200;
}
#endif

#if FACELIFT_LINK == 0
// POST /lift/move: checked, answered 202/409/422 (401 when the check fails), answer signed.
static void handle_move() {
  const char* path = "/lift/move";
  std::string body = server.arg("plain").c_str();
  std::string nonce = server.header("X-Facelift-Nonce").c_str();
  Check check = verifier.verify_request(
      FACELIFT_DEVICE_SECRET, "POST", path, server.header("X-Facelift-Timestamp").c_str(), nonce,
      server.header("X-Facelift-Signature").c_str(), body, unix_now());
  int status = 401;
  std::string answer;
  MoveCommand command;
  if (check != Check::Ok) {
    answer = std::string("{\"error\":\"") + facelift::check_name(check) + "\"}";
  } else if (!facelift::parse_move_command(body, command)) {
    status = 400;
    answer = "{\"error\":\"bad_request\"}";
  } else {
    switch (accept_command(command)) {
      case MoveResult::Accepted:
      case MoveResult::Duplicate: status = 202; answer = "{\"accepted\":true}"; break;
      case MoveResult::Busy: status = 409; answer = "{\"error\":\"busy\"}"; break;
      case MoveResult::BadFloor: status = 422; answer = "{\"error\":\"no_such_floor\"}"; break;
    }
  }
  int64_t now = unix_now();
  std::string signature = facelift::hmac_sha256_hex(
      FACELIFT_DEVICE_SECRET,
      facelift::signing_string(std::to_string(status), path, now, nonce, answer));
  server.sendHeader("X-Facelift-Timestamp", String(static_cast<long long>(now)));
  server.sendHeader("X-Facelift-Nonce", nonce.c_str());
  server.sendHeader("X-Facelift-Signature", signature.c_str());
  server.send(status, "application/json", answer.c_str());
}
#endif

#if FACELIFT_LINK == 1
// Long-polls GET /api/v1/device/commands?wait=25; a command comes back signed over our nonce.
static void poll_task(void*) {
  const char* path = "/api/v1/device/commands?wait=25";
  const char* wanted[] = {"X-Facelift-Timestamp", "X-Facelift-Nonce", "X-Facelift-Signature"};
  for (;;) {
    int64_t now = unix_now();
    std::string nonce = new_nonce();
    std::string signature = facelift::hmac_sha256_hex(
        FACELIFT_DEVICE_SECRET, facelift::signing_string("GET", path, now, nonce, ""));
    HTTPClient http;
    http.setTimeout(35000);
    http.begin(String(FACELIFT_SERVER) + path);
    http.collectHeaders(wanted, 3);
    http.addHeader("X-Facelift-Device", FACELIFT_DEVICE_ID);
    http.addHeader("X-Facelift-Timestamp", String(static_cast<long long>(now)));
    http.addHeader("X-Facelift-Nonce", nonce.c_str());
    http.addHeader("X-Facelift-Signature", signature.c_str());
    int status = http.GET();
    if (status == 200) {
      std::string body = http.getString().c_str();
      Check check = verifier.verify_response(
          FACELIFT_DEVICE_SECRET, status, path, nonce, http.header("X-Facelift-Timestamp").c_str(),
          http.header("X-Facelift-Nonce").c_str(), http.header("X-Facelift-Signature").c_str(),
          body, unix_now());
      MoveCommand command;
      if (check == Check::Ok && facelift::parse_move_command(body, command)) {
        accept_command(command);
      } else {
        Serial.printf("command ignored: %s\n", facelift::check_name(check));
      }
    } else if (status != 204) {
      vTaskDelay(pdMS_TO_TICKS(1000));  // server down or refusing: do not hammer it
    }
    http.end();
  }
}
#endif

void setup() {
  Serial.begin(115200);
  for (int i = 0; i < kFloors; ++i) pinMode(FLOOR_SENSOR_PINS[i], INPUT_PULLUP);
  pinMode(EMERGENCY_STOP_PIN, INPUT_PULLUP);
  pinMode(RESET_BUTTON_PIN, INPUT_PULLUP);
  pinMode(MOTOR_UP_PIN, OUTPUT);
  pinMode(MOTOR_DOWN_PIN, OUTPUT);
  digitalWrite(MOTOR_UP_PIN, LOW);
  digitalWrite(MOTOR_DOWN_PIN, LOW);
  xTaskCreatePinnedToCore(control_task, "control", 4096, nullptr, configMAX_PRIORITIES - 1,
                          nullptr, 1);
#if FACELIFT_LINK != 2
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  while (WiFi.status() != WL_CONNECTED) delay(250);
  configTime(0, 0, NTP_SERVER);
  while (unix_now() < 1700000000) delay(250);  // signatures need the real time
#endif
  // keeps increasing across restarts, as the server requires
  seq = static_cast<uint64_t>(unix_now()) * 1000;
#if FACELIFT_LINK == 0
  const char* headers[] = {"X-Facelift-Timestamp", "X-Facelift-Nonce", "X-Facelift-Signature"};
  server.collectHeaders(headers, 3);
  server.on("/lift/move", HTTP_POST, handle_move);
  server.begin();
#elif FACELIFT_LINK == 1
  xTaskCreatePinnedToCore(poll_task, "poll", 8192, nullptr, 1, nullptr, 0);
#endif
}

#if FACELIFT_LINK == 2
static std::string serial_line;

static void read_serial() {
  while (Serial.available() > 0) {
    char c = static_cast<char>(Serial.read());
    if (c == '\n') {
      MoveCommand command;
      if (facelift::parse_serial_move(serial_line, command)) accept_command(command);
      serial_line.clear();
    } else if (serial_line.size() < 128) {
      serial_line.push_back(c);
    }
  }
}
#endif

void loop() {
#if FACELIFT_LINK == 0
  server.handleClient();
#elif FACELIFT_LINK == 2
  read_serial();
#endif
  bool changed;
  int floor;
  const char* state;
  {
    std::lock_guard<std::mutex> guard(core_lock);
    changed = core.take_changed();
    floor = core.floor();
    state = facelift::state_name(core.state());
  }
  if (changed || millis() - last_report_ms >= HEARTBEAT_MS) {
    last_report_ms = millis();
    if (!send_report(floor, state)) {
      last_report_ms = millis() - HEARTBEAT_MS + 1000;  // try again in a second
    }
  }
  delay(2);
}
