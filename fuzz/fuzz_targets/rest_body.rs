//! REST request bodies (`services/protocol/src/rest.rs`): the first byte picks the body
//! type, the rest is the JSON. Parsing answers every input with a value or an error, and
//! a value it accepts encodes and parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_protocol::rest::{
    BroadcastRequest, CreateBotRequest, CreateUserRequest, CreateWebhookRequest, EditRequest,
    LoginRequest, OpenDirectRequest, SearchParams, SendRequest, SetPresenceRequest, WebhookPayload,
};

fn check<T: Serialize + DeserializeOwned>(json: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(json) {
        let encoded = serde_json::to_vec(&value).expect("a parsed body encodes");
        serde_json::from_slice::<T>(&encoded).expect("an encoded body parses");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((kind, json)) = data.split_first() else { return };
    match kind % 11 {
        0 => check::<LoginRequest>(json),
        1 => check::<SendRequest>(json),
        2 => check::<CreateUserRequest>(json),
        3 => check::<SetPresenceRequest>(json),
        4 => check::<OpenDirectRequest>(json),
        5 => check::<CreateBotRequest>(json),
        6 => check::<CreateWebhookRequest>(json),
        7 => check::<WebhookPayload>(json),
        8 => check::<BroadcastRequest>(json),
        9 => check::<EditRequest>(json),
        _ => check::<SearchParams>(json),
    }
});
