//! Clients of the ingest API that ship with the binary: `replay` (recorded positions) and
//! `simulate` (a synthetic fleet, over HTTP or as Teltonika/GT06 trackers over TCP), over one sender that retries as a well-behaved device does.

pub mod records;
pub mod replay;
pub mod sender;
pub mod simulate;
pub mod trackers;
