//! Integration tests: the real ONNX Runtime and the real models on real photos from
//! `../shared/data`. Run `scripts/setup` first (`scripts/test` does).

mod audit;
mod browser;
mod building;
mod challenge;
#[path = "../common/child_server.rs"]
mod child_server;
mod cli;
mod engine;
mod failover;
mod gallery;
mod hardening;
mod helpers;
#[path = "../common/hostile_images.rs"]
mod hostile_images;
mod http;
mod kiosk;
mod lift;
mod observability;
mod openapi;
mod pad;
mod postgres;
mod sessions;
mod tokens;
mod trust;
mod vggface;
