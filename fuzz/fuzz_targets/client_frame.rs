//! WebSocket text frames from clients: `ClientFrame::decode` must answer every input with
//! a frame or a typed error (never a panic), and a frame it accepts must survive its own
//! encoding unchanged (what a client library sends back is what the server read).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_protocol::ClientFrame;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ClientFrame::decode(text) {
        Ok(frame) => {
            let encoded = serde_json::to_string(&frame).expect("a decoded frame encodes");
            let again = ClientFrame::decode(&encoded).expect("an encoded frame decodes");
            assert_eq!(frame, again, "{encoded}");
        }
        Err((code, message, _)) => {
            assert!(!message.is_empty(), "{code} without a message");
        }
    }
});
