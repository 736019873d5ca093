//! The legacy relay path, made correct: a relay server that legacy producers
//! and consumers cannot tell from the old one (except that it frames by
//! `32 + payload_size` and never echoes), the producer-side relay client used
//! by the shim, and a tap that frames and timestamps what a relay sends.
//!
//! It deliberately never rewrites a message: bytes go out exactly as they came
//! in, or not at all.
//!
//! Not built yet: arrives with the relay issue.
