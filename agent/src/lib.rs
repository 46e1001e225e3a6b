//! `ferryd` as a library: the agent's modules, shared by the binary and its tests.

pub mod api;
pub mod cli;
pub mod commands;
pub mod config;
pub mod driver;
pub mod failpoint;
pub mod health;
pub mod journal;
pub mod mqtt;
pub mod notify;
pub mod repo;
pub mod report;
pub mod service;
pub mod state;
pub mod status;
pub mod store;
pub mod systemd;
pub mod trust;
pub mod users;
pub mod verify;
