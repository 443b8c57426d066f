#include "lift_core.h"

namespace facelift {

const char* state_name(LiftState state) {
  switch (state) {
    case LiftState::Idle: return "idle";
    case LiftState::Moving: return "moving";
    case LiftState::Fault: return "fault";
  }
  return "fault";
}

bool Debouncer::update(bool raw, uint32_t now_ms) {
  if (raw != candidate_) {
    candidate_ = raw;
    since_ms_ = now_ms;
  }
  if (candidate_ != value_ && now_ms - since_ms_ >= stable_ms_) value_ = candidate_;
  return value_;
}

LiftCore::LiftCore(int lowest, int highest, int start_floor, uint32_t debounce_ms,
                   uint32_t floor_travel_ms)
    : lowest_(lowest),
      highest_(highest < lowest ? lowest : highest),
      floor_(start_floor),
      target_(start_floor),
      floor_travel_ms_(floor_travel_ms) {
  if (highest_ - lowest_ + 1 > kMaxFloors) highest_ = lowest_ + kMaxFloors - 1;
  if (floor_ < lowest_ || floor_ > highest_) floor_ = target_ = lowest_;
  for (Debouncer& sensor : sensors_) sensor = Debouncer(debounce_ms);
}

MoveResult LiftCore::request_move(const std::string& request_id, int floor, uint32_t now_ms) {
  if (!request_id_.empty() && request_id == request_id_) return MoveResult::Duplicate;
  if (floor < lowest_ || floor > highest_) return MoveResult::BadFloor;
  if (state_ != LiftState::Idle) return MoveResult::Busy;
  request_id_ = request_id;
  target_ = floor;
  changed_ = true;
  if (floor == floor_) return MoveResult::Accepted;  // already there: report idle again
  state_ = LiftState::Moving;
  last_progress_ms_ = now_ms;
  return MoveResult::Accepted;
}

void LiftCore::update_inputs(const bool* at_floor, bool emergency_stop, uint32_t now_ms) {
  emergency_stop_ = emergency_stop;
  if (emergency_stop && state_ != LiftState::Fault) {
    // no debounce: stopping a moment early is always safe
    fault("emergency stop");
  }
  int level = -1;
  for (int i = 0; i <= highest_ - lowest_; ++i) {
    if (sensors_[i].update(at_floor[i], now_ms)) level = lowest_ + i;
  }
  if (level >= 0 && level != floor_) {
    floor_ = level;
    changed_ = true;
    last_progress_ms_ = now_ms;
  }
  if (state_ == LiftState::Moving) {
    if (level == target_) {
      state_ = LiftState::Idle;
      changed_ = true;
    } else if (now_ms - last_progress_ms_ > floor_travel_ms_) {
      fault("no floor reached in time (motor or sensor)");
    }
  }
}

bool LiftCore::reset_fault(uint32_t now_ms) {
  if (state_ != LiftState::Fault || emergency_stop_) return false;
  last_progress_ms_ = now_ms;
  state_ = LiftState::Idle;
  target_ = floor_;
  fault_reason_ = "";
  changed_ = true;
  return true;
}

void LiftCore::fault(const char* reason) {
  state_ = LiftState::Fault;
  fault_reason_ = reason;
  changed_ = true;
}

MotorOutputs LiftCore::outputs() const {
  MotorOutputs out;
  if (state_ == LiftState::Moving) {
    out.up = target_ > floor_;
    out.down = target_ < floor_;
  }
  return out;
}

bool LiftCore::take_changed() {
  bool was = changed_;
  changed_ = false;
  return was;
}

}  // namespace facelift
