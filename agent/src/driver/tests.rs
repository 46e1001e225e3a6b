//! Driver tests: a fake systemd, the shared fault server.
