//! A device message as the server receives it: signing headers, path and body, checked by the
//! server's verifier and, when it passes, parsed as a status report, a move command and a
//! serial line. With `sign` set the message is signed with the right key first, so that the
//! fuzzer also reaches what comes after the signature (the window, the replay memory, the
//! parsers).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use facelift::lift::protocol::{
    Message, MoveCommand, Presented, Secret, SerialLine, StatusReport, Verifier, sign_request,
};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    sign: bool,
    timestamp: &'a str,
    nonce: &'a str,
    signature: &'a str,
    path: &'a str,
    body: &'a [u8],
    stamp: i64,
    now: i64,
}

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| Verifier::new(30))
}

fuzz_target!(|input: Input<'_>| {
    let secret = Secret::new("fuzzing-secret");
    let message = Message {
        method: "POST",
        path: input.path,
        body: input.body,
    };
    let signed;
    let stamp;
    let presented = if input.sign {
        signed = sign_request(&secret, "POST", input.path, input.body, input.stamp);
        stamp = signed.timestamp.to_string();
        Presented {
            timestamp: Some(&stamp),
            nonce: Some(&signed.nonce),
            signature: Some(&signed.signature),
        }
    } else {
        Presented {
            timestamp: Some(input.timestamp),
            nonce: Some(input.nonce),
            signature: Some(input.signature),
        }
    };
    if let Ok(timestamp) =
        verifier().verify_request("lift-a", &secret, &message, &presented, input.now)
    {
        assert!(
            timestamp.abs_diff(input.now) <= 30,
            "a stale message passed"
        );
        let _ = serde_json::from_slice::<StatusReport>(input.body);
        let _ = serde_json::from_slice::<MoveCommand>(input.body);
    }
    if let Ok(line) = std::str::from_utf8(input.body) {
        if let Ok(parsed) = SerialLine::parse(line) {
            // what we parse we write back the same way
            assert_eq!(SerialLine::parse(&parsed.to_string()), Ok(parsed));
        }
    }
});
