//! Fuzzes the host <-> guest protocol decoders (`shared::guest`, and the live-run frames of
//! `shared::stream`).
//!
//! The whole input is given to both `decode_request` (what the guest reads from its I/O disk)
//! and `decode_response` (what the host reads back). Neither may panic, whatever the bytes.
//! When one accepts the input, the parts it returns must lie inside the input, and re-encoding
//! them must decode to the same thing. Archives that come out are also fed to the cpio decoder,
//! as the guest and the host do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::cpio::{self, Limits};
use shared::guest::{self, ProtocolError, RESPONSE_PREFIX_LEN};

fuzz_target!(|data: &[u8]| {
    // Live-run frames, arriving in pieces of any size (the first byte picks the size): every
    // frame accepted is a whole one, no larger than the limit, and re-encodes to its bytes.
    if let Some((&piece, rest)) = data.split_first() {
        let mut decoder = shared::stream::Decoder::new();
        let mut framed = 0usize;
        for chunk in rest.chunks(usize::from(piece).max(1)) {
            decoder.push(chunk);
            loop {
                match decoder.next_frame() {
                    Ok(Some((kind, bytes))) => {
                        assert!(bytes.len() <= shared::stream::MAX_FRAME_DATA);
                        let mut again = Vec::new();
                        shared::stream::encode(kind, &bytes, &mut again);
                        let at = framed..framed + again.len();
                        assert_eq!(rest.get(at), Some(&again[..]), "a frame is not its bytes");
                        framed += again.len();
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    match guest::decode_request(data) {
        Ok((request, archive)) => {
            assert!(archive.len() + 8 <= data.len(), "request archive longer than the input");
            let encoded = guest::encode_request(&request, archive).expect("request serialises");
            let (again, archive2) = guest::decode_request(&encoded)
                .unwrap_or_else(|e| panic!("re-encoded request refused: {e}"));
            assert_eq!(again, request, "request round trip changed the request");
            assert_eq!(archive2, archive, "request round trip changed the archive");
            let _ = cpio::decode(archive, &Limits::INPUT);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    match guest::decode_response(data) {
        Ok((response, archive)) => {
            assert!(archive.len() + RESPONSE_PREFIX_LEN <= data.len());
            let encoded = guest::encode_response(&response, archive).expect("response serialises");
            let (again, archive2) = guest::decode_response(&encoded)
                .unwrap_or_else(|e| panic!("re-encoded response refused: {e}"));
            assert_eq!(again, response, "response round trip changed the response");
            assert_eq!(archive2, archive, "response round trip changed the archive");
            let _ = cpio::decode(archive, &Limits::MAX);
        }
        Err(ProtocolError::NoAnswer) => {
            assert_ne!(
                data.get(..4),
                Some(&guest::RESPONSE_MAGIC[..]),
                "magic present but NoAnswer"
            );
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
