// The lift controller's logic, free of Arduino calls so that it runs in the host tests:
// one move at a time, debounced floor sensors, motor outputs, and an emergency stop that
// latches a fault until it is released and reset on site.
#pragma once

#include <cstdint>
#include <string>

namespace facelift {

enum class LiftState { Idle, Moving, Fault };
const char* state_name(LiftState state);

// A contact is trusted once it has held the same value for `stable_ms`.
class Debouncer {
 public:
  explicit Debouncer(uint32_t stable_ms = 30) : stable_ms_(stable_ms) {}
  // Feeds a raw reading; answers the debounced value.
  bool update(bool raw, uint32_t now_ms);
  bool value() const { return value_; }

 private:
  uint32_t stable_ms_;
  bool value_ = false;
  bool candidate_ = false;
  uint32_t since_ms_ = 0;
};

struct MotorOutputs {
  bool up = false;
  bool down = false;
};

enum class MoveResult { Accepted, Duplicate, Busy, BadFloor };

class LiftCore {
 public:
  static constexpr int kMaxFloors = 16;

  // `floor_travel_ms`: the longest one floor may take before the motor is stopped as stuck.
  LiftCore(int lowest, int highest, int start_floor, uint32_t debounce_ms = 30,
           uint32_t floor_travel_ms = 20000);

  // A command from the server. Repeating the request id being served (or last served)
  // answers Duplicate and changes nothing.
  MoveResult request_move(const std::string& request_id, int floor, uint32_t now_ms);

  // Feeds the raw inputs: `at_floor[i]` is the sensor of floor lowest + i (active when the
  // car is level there), `emergency_stop` the stop input (active when pressed).
  void update_inputs(const bool* at_floor, bool emergency_stop, uint32_t now_ms);

  // Clears a fault once the emergency stop is released (an on-site reset button).
  bool reset_fault(uint32_t now_ms);

  MotorOutputs outputs() const;
  LiftState state() const { return state_; }
  int floor() const { return floor_; }
  int target() const { return target_; }
  int lowest() const { return lowest_; }
  int highest() const { return highest_; }
  const char* fault_reason() const { return fault_reason_; }

  // Whether the state or floor changed since the last call (time to send a report).
  bool take_changed();

 private:
  void fault(const char* reason);

  int lowest_, highest_;
  int floor_;
  int target_;
  LiftState state_ = LiftState::Idle;
  std::string request_id_;
  const char* fault_reason_ = "";
  uint32_t floor_travel_ms_;
  uint32_t last_progress_ms_ = 0;
  bool changed_ = true;  // report once at start
  bool emergency_stop_ = false;
  Debouncer sensors_[kMaxFloors];
};

}  // namespace facelift
