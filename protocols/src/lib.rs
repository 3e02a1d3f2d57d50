//! The binary protocols of hardware trackers, as pure functions: bytes in, frames, records and
//! answers out, no I/O. Ingest's TCP listeners (`fleetstream-ingest`) drive them.
//!
//! - [`teltonika`]: Teltonika FMB/FMC devices, the IMEI handshake and AVL packets of codec 8,
//!   8 Extended and 16;
//! - [`gt06`]: the GT06 protocol of Concox and its clones: login, location, status and alarm
//!   packets;
//! - [`frames`]: cutting a TCP byte stream into frames, whatever the reads were;
//! - [`crc`]: the two checksums the protocols use;
//! - [`reader`], [`error`]: reading fields by name, and errors that say which field and why.

pub mod crc;
pub mod error;
pub mod frames;
#[doc(hidden)]
pub mod fuzzing;
pub mod gt06;
pub mod reader;
pub mod teltonika;

pub use error::DecodeError;
pub use frames::FrameBuffer;
