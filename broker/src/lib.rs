//! The Mycelium topic broker: the sans-IO wire protocol (every op, encode and
//! decode), the broker server, the client producers publish through, and the
//! NATS backend for deployments larger than one machine.
//!
//! It deliberately treats payloads as opaque bytes: the broker never parses
//! the Protocol V2 messages it carries.
//!
//! Not built yet: arrives with the broker issue.
