//! Webhook signatures: `Careloop-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`
//! over `"<t>.<body>"` with the facility's secret. The timestamp lets a receiver
//! refuse replays; the MAC proves careloop sent the exact body.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER: &str = "Careloop-Signature";

pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={timestamp},v1={hex}")
}

/// What a receiver does: recompute and compare in constant time.
pub fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let Some(given) = (0..v1.len())
        .step_by(2)
        .map(|i| {
            v1.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.verify_slice(&given).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let h = sign(
            "facility-secret-123",
            1_700_000_000,
            r#"{"status":"accepted"}"#,
        );
        assert!(h.starts_with("t=1700000000,v1="));
        assert!(verify(
            "facility-secret-123",
            &h,
            r#"{"status":"accepted"}"#
        ));
        assert!(!verify(
            "facility-secret-123",
            &h,
            r#"{"status":"rejected"}"#
        ));
        assert!(!verify(
            "another-secret-4567",
            &h,
            r#"{"status":"accepted"}"#
        ));
        assert!(!verify("facility-secret-123", "t=1,v1=zz", "{}"));
    }
}
