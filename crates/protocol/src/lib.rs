//! happn protocol 1.1.0 as the 2.21 clients speak it: incoming requests, outgoing replies,
//! events and system messages, and the Primus framing around them. Pure data and text: no I/O.

pub mod command;
pub mod error;
pub mod frame;
pub mod json;
pub mod request;
pub mod response;
mod scan;

pub use command::{Command, GetOptions, OffOptions, OnOptions, PublishOptions, SetOptions, Tag};
pub use error::WireError;
pub use frame::{decode_frame, decode_request, encode_control, escape_line_separators, Control, Decoded, Frame};
pub use request::{unreadable_request, Action, Data, Request, RequestError};
pub use response::{
    anonymous_error, initial_emit_event, item_json, item_json_text, system_message, unknown_action_error, EventMeta, RecordMeta, Reply,
};

/// The protocol string the 2.21 server appends to every object it sends.
pub const PROTOCOL_VERSION: &str = "1.1.0";
