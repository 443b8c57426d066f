//! facelift: log in to a lift with your face.
//!
//! `face` is the recognition engine, `store` the SQLite storage, `web` the HTTP layer over them,
//! `cli` the command line. Dependencies point one way: `web` and `cli` use the others.

pub mod access;
pub mod app;
pub mod camera_sim;
pub mod cli;
pub mod clock;
pub mod config;
pub mod device_sim;
pub mod face;
pub mod kiosk;
pub mod lift;
pub mod store;
pub mod tokens;
pub mod web;

pub use app::{App, open_engine_pool};
pub use config::Settings;
