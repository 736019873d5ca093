//! Rollout of the migration, one service at a time: the four stages, the
//! per-service plan kept in `rollout.toml`, the pure `decide(plan, service)`
//! route function, the gates that demand verify evidence before a stage
//! advances, and the append-only audit log.
//!
//! It deliberately never moves messages and never reads the clock on its own:
//! callers pass `now`, so every decision can be replayed in a test.
//!
//! Not built yet: arrives with the shim and rollout issue.
