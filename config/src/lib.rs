//! Settings for every part of the toolkit: the schema, layered loading
//! (embedded defaults, then the file, then `MYC_*` environment variables, then
//! command-line overrides), validation, and hot reload onto a `watch` channel.
//!
//! It deliberately does not act on settings: it never opens sockets, never
//! starts servers and never decides rollout routes. It only says what the
//! settings are, or why a file was refused.
//!
//! Not built yet: the schema arrives with the shim and rollout issue.
