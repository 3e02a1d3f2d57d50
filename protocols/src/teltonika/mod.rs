//! Teltonika FMB/FMC trackers over TCP (Teltonika's "Data Sending Protocols"): the device opens
//! with its IMEI ([`handshake`]) and the server answers 0x01 to accept it (0x00 to refuse); then
//! the device sends AVL data packets ([`avl`], codec 8, 8 Extended or 16), each answered with the
//! number of records the server took, as four big-endian bytes. A device resends a packet that
//! is not answered. [`split`] cuts the stream into these frames; [`position`] turns an AVL
//! record into fleetstream's position.

pub mod avl;
pub mod handshake;
pub mod position;
pub mod split;

pub use avl::{AvlPacket, AvlRecord, Codec, GpsElement, IoElements, decode_packet, encode_ack, encode_packet};
pub use handshake::{ACCEPT, REJECT, decode_imei, encode_imei};
pub use position::record_position;
pub use split::{PING, avl_frame_len, imei_frame_len};
