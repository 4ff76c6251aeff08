//! End-to-end tests of careloop live in `tests/`; `spawn_app` starts exactly what
//! `careloop dev` starts, on a fresh database and NATS namespace.
