//! Protobuf messages between the services: what the storage service reads from a gateway
//! (appends, searches, broadcasts, audit queries, each with a W3C `traceparent`) and what a
//! gateway reads back (append outcomes, a failed call's status details). The first byte
//! picks the message, the rest is its wire encoding. Decoding and the conversion to our
//! records must answer every input with a value or a typed error (never a panic), and a
//! converted value must survive being encoded and converted again unchanged: whatever a
//! peer sends, both ends then agree on what it meant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use switchboard_storage::grpc::convert::*;
use switchboard_storage::grpc::pb;
use switchboard_telemetry::trace;
use tonic::{Code, Status};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 7 {
        0 => {
            let Ok(request) = pb::SearchRequest::decode(bytes) else { return };
            if let Ok((viewer, query)) = search_from_pb(request) {
                let encoded = search_to_pb(&viewer, &query);
                let (viewer, query) = search_from_pb(encoded.clone()).expect("re-read");
                assert_eq!(encoded, search_to_pb(&viewer, &query));
            }
        }
        1 => {
            let Ok(message) = pb::NewMessage::decode(bytes) else { return };
            traceparent(&message.traceparent);
            if let Ok(new) = new_message_from_pb(message) {
                let encoded = new_message_to_pb(new);
                let again = new_message_from_pb(encoded.clone()).expect("re-read");
                assert_eq!(encoded, new_message_to_pb(again));
            }
        }
        2 => {
            let Ok(reply) = pb::AppendOutcomes::decode(bytes) else { return };
            let sent = reply.outcomes.len() + usize::from(bytes.len() % 3 == 0);
            let results = outcomes_from_pb(reply.outcomes, sent);
            assert_eq!(results.len(), sent, "one result per message sent");
            for result in results {
                match result {
                    Ok(appended) => {
                        let encoded = appended_to_pb(appended);
                        let again = appended_from_pb(encoded.clone()).expect("re-read");
                        assert_eq!(encoded, appended_to_pb(again));
                    }
                    Err(e) => same_error_after_a_trip(e),
                }
            }
        }
        3 => {
            // A failed call: any code, any details (a proxy's answer has none).
            let code = Code::from(i32::from(bytes.first().copied().unwrap_or(0) % 17));
            let status = Status::with_details(code, "refused", bytes.to_vec().into());
            same_error_after_a_trip(status_to_error(status));
        }
        4 => {
            let Ok(broadcast) = pb::NewBroadcast::decode(bytes) else { return };
            if let Ok(new) = new_broadcast_from_pb(broadcast) {
                let encoded = new_broadcast_to_pb(new);
                let again = new_broadcast_from_pb(encoded.clone()).expect("re-read");
                assert_eq!(encoded, new_broadcast_to_pb(again));
            }
        }
        5 => {
            let Ok(query) = pb::AuditQuery::decode(bytes) else { return };
            let encoded = audit_query_to_pb(&audit_query_from_pb(query));
            assert_eq!(encoded, audit_query_to_pb(&audit_query_from_pb(encoded.clone())));
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(bytes) {
                traceparent(text);
            }
        }
    }
});

/// A typed error the storage service sends survives the trip as the same error.
fn same_error_after_a_trip(error: switchboard_storage::StoreError) {
    let failure = error_to_failure(&error);
    let again = status_to_error(error_to_status(error.clone()));
    assert_eq!(failure, error_to_failure(&again), "{error} came back as {again}");
    assert_eq!(error.to_string(), again.to_string());
}

/// A `traceparent` is read as a context or as none, and a context read back from its own
/// text is the same context.
fn traceparent(text: &str) {
    if let Some(context) = trace::parse(text) {
        assert_eq!(trace::parse(&trace::format(&context)), Some(context), "{text:?}");
    }
}
