// Copy to config.h (git-ignored) and fill in. `facelift device add NAME ...` prints the id and
// secret lines for this device.
#pragma once

// How the server and this board talk: 0 push (the server POSTs to this board's /lift/move),
// 1 pull (this board long-polls the server: use it behind NAT), 2 USB serial.
#define FACELIFT_LINK 1

#define WIFI_SSID "your-network"
#define WIFI_PASSWORD "your-password"
#define NTP_SERVER "pool.ntp.org"  // signatures carry the time: the clock must be right

// The facelift server, without a trailing slash (for pull, and for reports).
#define FACELIFT_SERVER "http://192.168.1.10:8080"
#define FACELIFT_DEVICE_ID "lift-a"
#define FACELIFT_DEVICE_SECRET "paste-the-64-hex-digit-secret-here"

// Floors, and one level sensor per floor from the lowest up (active LOW, to GND).
#define LOWEST_FLOOR 1
#define HIGHEST_FLOOR 2
static const int FLOOR_SENSOR_PINS[] = {32, 33};

#define MOTOR_UP_PIN 25    // to the motor driver's "up" relay input (active HIGH)
#define MOTOR_DOWN_PIN 26  // "down" relay input (active HIGH)
// Normally-closed emergency stop to GND: pressed, or a cut wire, reads HIGH and stops the lift.
#define EMERGENCY_STOP_PIN 27
#define RESET_BUTTON_PIN 14  // clears a fault once the emergency stop is released (to GND)

#define DEBOUNCE_MS 30
#define FLOOR_TRAVEL_MS 20000  // longest time between two floors before the motor counts as stuck
#define HEARTBEAT_MS 5000
