//! The GT06 protocol of Concox trackers and their many clones, over TCP. Every packet is framed
//! the same way ([`frame`]): 0x78 0x78 and a one-byte length (0x79 0x79 and a two-byte length for
//! long packets), a protocol number, the content, a serial number, a CRC-ITU, 0x0D 0x0A. The
//! device logs in with its IMEI first ([`message`], protocol 0x01), then sends locations (0x12,
//! 0x22), status/heartbeats (0x13) and alarms (0x16, 0x26). The server answers a packet with the
//! same protocol number and serial number ([`frame::response`]). [`position`] turns a location or
//! an alarm into fleetstream's position.

pub mod frame;
pub mod message;
pub mod position;

pub use frame::{Packet, decode_frame, encode_frame, frame_len, response};
pub use message::{Cell, Gps, Message, Status, decode_message, encode_message, protocol};
pub use position::message_position;
