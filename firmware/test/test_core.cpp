// Host tests of the firmware's portable core: `make -C firmware test`.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "lift_core.h"
#include "protocol.h"

using namespace facelift;

#include "check.h"

static std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, '\t')) fields.push_back(field);
  if (!line.empty() && line.back() == '\t') fields.push_back("");
  return fields;
}

// The same vectors the Rust server checks (src/lift/protocol.rs).
static void signatures_match_the_shared_vectors(const char* path) {
  std::ifstream file(path);
  CHECK(file.good());
  std::string line;
  int vectors = 0;
  while (std::getline(file, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> f = split_tabs(line);
    CHECK(f.size() == 7);
    if (f.size() != 7) continue;
    int64_t timestamp = 0;
    CHECK(parse_int64(f[3], timestamp));
    CHECK(hmac_sha256_hex(f[0], signing_string(f[1], f[2], timestamp, f[4], f[5])) == f[6]);
    ++vectors;
  }
  CHECK(vectors >= 3);
}

static void the_verifier_refuses_forged_stale_and_replayed_messages() {
  const std::string secret = "device-secret";
  const std::string body = "{\"request_id\":\"r1\",\"floor\":2}";
  const std::string nonce = "0011aabb";
  std::string good = hmac_sha256_hex(secret, signing_string("POST", "/lift/move", 1000, nonce, body));
  Verifier verifier(30);
  CHECK(verifier.verify_request(secret, "POST", "/lift/move", "1000", nonce, good, "{}", 1000) ==
        Check::BadSignature);
  CHECK(verifier.verify_request("other", "POST", "/lift/move", "1000", nonce, good, body, 1000) ==
        Check::BadSignature);
  CHECK(verifier.verify_request(secret, "POST", "/lift/move", "", nonce, good, body, 1000) ==
        Check::Unsigned);
  CHECK(verifier.verify_request(secret, "POST", "/lift/move", "1000", nonce, good, body, 1031) ==
        Check::Stale);
  CHECK(verifier.verify_request(secret, "POST", "/lift/move", "1000", nonce, good, body, 969) ==
        Check::Stale);
  CHECK(verifier.verify_request(secret, "POST", "/lift/move", "1000", nonce, good, body, 1010) ==
        Check::Ok);
  CHECK(verifier.verify_request(secret, "POST", "/lift/move", "1000", nonce, good, body, 1011) ==
        Check::Replayed);

  // a response is bound to the nonce of our request
  const std::string answer = "{\"request_id\":\"r9\",\"floor\":1}";
  const std::string path = "/api/v1/device/commands?wait=25";
  std::string signed_answer = hmac_sha256_hex(secret, signing_string("200", path, 2000, "n1", answer));
  CHECK(verifier.verify_response(secret, 200, path, "n1", "2000", "n1", signed_answer, answer, 2005) ==
        Check::Ok);
  CHECK(verifier.verify_response(secret, 200, path, "n2", "2000", "n1", signed_answer, answer, 2005) ==
        Check::Replayed);
  CHECK(verifier.verify_response(secret, 204, path, "n1", "2000", "n1", signed_answer, answer, 2005) ==
        Check::BadSignature);
  CHECK(verifier.verify_response(secret, 200, path, "n1", "2000", "n1", signed_answer, answer, 2100) ==
        Check::Stale);
  CHECK(constant_time_equal("abc", "abc") && !constant_time_equal("abc", "abd") &&
        !constant_time_equal("abc", "ab"));
}

static void messages_parse_strictly_and_build_what_the_server_reads() {
  MoveCommand command;
  CHECK(parse_move_command("{\"request_id\":\"9c1d-2e_3f\",\"floor\":-1}", command));
  CHECK(command.request_id == "9c1d-2e_3f" && command.floor == -1);
  CHECK(parse_move_command(" { \"floor\" : 2 , \"request_id\" : \"r1\" } ", command));
  CHECK(command.request_id == "r1" && command.floor == 2);
  const char* bad[] = {"",
                       "{}",
                       "{\"floor\":2}",
                       "{\"request_id\":\"r1\"}",
                       "{\"request_id\":\"r 1\",\"floor\":2}",
                       "{\"request_id\":\"r1\",\"floor\":\"2\"}",
                       "{\"request_id\":\"r1\",\"floor\":2,\"extra\":1}",
                       "{\"request_id\":\"r1\",\"floor\":2}trailing",
                       "{\"request_id\":\"r1\",\"floor\":99999}",
                       "{\"request_id\":\"r1\",\"floor\":2",
                       "not json"};
  for (const char* text : bad) CHECK(!parse_move_command(text, command));

  // byte for byte what serde writes for the server's StatusReport
  CHECK(status_json("lift-a", 2, "idle", 1795000000123ULL) ==
        "{\"device_id\":\"lift-a\",\"floor\":2,\"state\":\"idle\",\"seq\":1795000000123}");

  CHECK(parse_serial_move("MOVE r-1 2", command) && command.request_id == "r-1" &&
        command.floor == 2);
  CHECK(parse_serial_move("MOVE r-1 -1\r", command) && command.floor == -1);
  const char* bad_lines[] = {"", "MOVE", "MOVE r1", "MOVE r1 x", "MOVE r1 2 3", "STATUS 1 idle 2",
                             "MOVE bad!id 2"};
  for (const char* line : bad_lines) CHECK(!parse_serial_move(line, command));
  CHECK(serial_status(-1, "moving", 42) == "STATUS -1 moving 42");
}

// Sensors for floors 1..3 with the car level at `floor` (0: between floors).
static void level_at(LiftCore& lift, int floor, bool stop, uint32_t now) {
  bool sensors[3] = {floor == 1, floor == 2, floor == 3};
  lift.update_inputs(sensors, stop, now);
}

static void the_core_moves_once_stops_level_and_latches_the_emergency_stop() {
  LiftCore lift(1, 3, 1, 30, 5000);
  CHECK(lift.take_changed());  // the first report
  CHECK(lift.request_move("r1", 7, 0) == MoveResult::BadFloor);
  CHECK(lift.request_move("r1", 3, 0) == MoveResult::Accepted);
  CHECK(lift.state() == LiftState::Moving && lift.outputs().up && !lift.outputs().down);
  CHECK(lift.take_changed() && !lift.take_changed());
  CHECK(lift.request_move("r2", 2, 10) == MoveResult::Busy);
  CHECK(lift.request_move("r1", 3, 10) == MoveResult::Duplicate);

  // floor 2's sensor bounces: not trusted until it holds for 30 ms
  level_at(lift, 2, false, 100);
  level_at(lift, 0, false, 110);
  level_at(lift, 2, false, 120);
  CHECK(lift.floor() == 1);
  level_at(lift, 2, false, 151);
  CHECK(lift.floor() == 2 && lift.state() == LiftState::Moving && lift.take_changed());
  level_at(lift, 0, false, 400);
  level_at(lift, 3, false, 800);
  level_at(lift, 3, false, 831);
  CHECK(lift.floor() == 3 && lift.state() == LiftState::Idle);
  CHECK(!lift.outputs().up && !lift.outputs().down);
  CHECK(lift.request_move("r1", 3, 900) == MoveResult::Duplicate);

  // the emergency stop, pressed while moving down: motors off at once, fault latched
  CHECK(lift.request_move("r3", 1, 1000) == MoveResult::Accepted);
  CHECK(lift.outputs().down);
  level_at(lift, 0, true, 1010);
  CHECK(lift.state() == LiftState::Fault && !lift.outputs().up && !lift.outputs().down);
  CHECK(std::string(lift.fault_reason()) == "emergency stop");
  CHECK(lift.request_move("r4", 2, 1020) == MoveResult::Busy);
  CHECK(!lift.reset_fault(1030));  // still pressed
  level_at(lift, 0, false, 1040);
  CHECK(lift.state() == LiftState::Fault);  // released, but latched
  CHECK(lift.reset_fault(1050) && lift.state() == LiftState::Idle);

  // a motor that never reaches the next floor is stopped as stuck
  CHECK(lift.request_move("r5", 1, 2000) == MoveResult::Accepted);
  level_at(lift, 0, false, 4000);
  CHECK(lift.state() == LiftState::Moving);
  level_at(lift, 0, false, 7001);
  CHECK(lift.state() == LiftState::Fault && !lift.outputs().down);
}

int main(int argc, char** argv) {
  const char* vectors = argc > 1 ? argv[1] : "test/signature_vectors.txt";
  signatures_match_the_shared_vectors(vectors);
  the_verifier_refuses_forged_stale_and_replayed_messages();
  messages_parse_strictly_and_build_what_the_server_reads();
  the_core_moves_once_stops_level_and_latches_the_emergency_stop();
  std::printf("firmware core: %d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
