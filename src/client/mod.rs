//! Clients of the ingest API that ship with the binary: `replay` (recorded positions) and
//! `simulate` (a synthetic fleet), over one sender that retries as a well-behaved device does.

pub mod records;
pub mod replay;
pub mod sender;
pub mod simulate;
