// Copy to config.h (git-ignored) and fill in. `facelift device add NAME --camera` prints the
// secret for this board once.
#pragma once

#define WIFI_SSID "your-network"
#define WIFI_PASSWORD "your-password"
#define NTP_SERVER "pool.ntp.org"  // signatures carry the time: the clock must be right

// The facelift server, without a trailing slash.
#define FACELIFT_SERVER "http://192.168.1.10:8080"
#define FACELIFT_DEVICE_ID "lobby-cam"
#define FACELIFT_DEVICE_SECRET "paste-the-64-hex-digit-secret-here"

// The board: CAMERA_MODEL_AI_THINKER (ESP32-CAM) or CAMERA_MODEL_ESP_EYE.
#define CAMERA_MODEL_AI_THINKER

#define POLL_WAIT_SECS 25        // how long the server may hold a capture poll
#define FRAME_INTERVAL_MS 200    // between the frames of a burst (the head turns meanwhile)
#define JPEG_QUALITY 12          // 0-63, lower is better; 12 keeps a VGA frame near 25 kB
