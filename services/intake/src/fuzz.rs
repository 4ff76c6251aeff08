//! A small deterministic mutation fuzzer for the edge's parsers (the MLLP framer, the
//! HL7 ADT reader, the FHIR Bundle reader, the REST JSON bodies), with no extra
//! crate: real inputs (the fixtures, the documented request bodies) mutated by a
//! seeded generator, so a failing case is reproduced by its seed and number.
//!
//! The unit tests below run [`cases`] inputs per target (10,000 by default); the
//! edge test (`tests/tests/e2e/edges.rs`) sends the same kind of inputs to a running
//! careloop. A longer run is one command:
//!
//! ```sh
//! CARELOOP_FUZZ_CASES=1000000 CARELOOP_FUZZ_SEED=$RANDOM cargo nextest run -p careloop-intake fuzz
//! ```

use serde_json::{Value, json};

/// How many cases each target runs: `CARELOOP_FUZZ_CASES`, 10,000 by default.
pub fn cases() -> usize {
    std::env::var("CARELOOP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// The seed: `CARELOOP_FUZZ_SEED`, fixed by default (a run is reproducible).
pub fn seed() -> u64 {
    std::env::var("CARELOOP_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5EED_CA4E_100F)
}

/// xorshift64*: fast, deterministic, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that mean something to an HL7 or JSON reader, or to Postgres.
const SPECIAL: &[&[u8]] = &[
    b"\x00",
    b"\x0B",
    b"\x1C\x0D",
    b"\r",
    b"\n",
    b"|",
    b"^",
    b"~",
    b"\\",
    b"&",
    b"\xFF",
    b"\xC3",
    b"\xEF\xBB\xBF",
    b"\xED\xA0\x80",
    b"\rMSH|^~\\&|EPIC|ST MARYS|C|D|20260101||ADT^A03|X2|P|2.5\r",
    b"\rPID|1||",
    b"\rZPS|Y||x|high",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"\\u0000",
    b"\\ud800",
    b"99999999999999999999",
    b"-1",
    b"null",
    b"2999-01-01T00:00:00Z",
];

/// `input` changed by one to eight random mutations: bytes flipped, inserted,
/// removed, repeated (a field repeated many times), special bytes spliced in.
pub fn mutate_bytes(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(out.len() + 1);
        match rng.below(7) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.insert(at, rng.next_u64() as u8),
            2 if !out.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                out.drain(at.min(end)..end);
            }
            3 if !out.is_empty() => {
                // Repeat a slice: repetitions, segments and arrays grow.
                let start = rng.below(out.len());
                let end = (start + 1 + rng.below(40)).min(out.len());
                let piece = out[start..end].to_vec();
                let most = if rng.below(4) == 0 { 3_000 } else { 30 };
                let times = 1 + rng.below(most);
                let at = at.min(out.len());
                out.splice(at..at, piece.repeat(times));
            }
            4 => out.truncate(at),
            _ => {
                let s = rng.pick(SPECIAL);
                out.splice(at..at, s.iter().copied());
            }
        }
    }
    out
}

/// How many items a list may get: past every limit (up to 60), now and then
/// thousands.
fn many(rng: &mut Rng) -> usize {
    if rng.below(20) == 0 { 5_000 } else { 60 }
}

/// A value that is wrong somewhere: another type, a string careloop cannot store or
/// too long, a list too long, nesting too deep.
fn hostile_value(rng: &mut Rng) -> Value {
    match rng.below(12) {
        0 => Value::Null,
        1 => json!(rng.next_u64() as i64),
        2 => json!(true),
        3 => json!(""),
        4 => json!("A\u{0}B"),
        5 => json!("x".repeat(1 + rng.below(5_000))),
        6 => {
            let most = many(rng);
            let n = 1 + rng.below(most);
            json!(vec!["emotional"; n])
        }
        7 => {
            let most = many(rng);
            let n = 1 + rng.below(most);
            json!(vec![json!({"system": "urn:x", "value": "1"}); n])
        }
        8 => {
            let mut v = json!("deep");
            for _ in 0..rng.below(200) {
                v = json!([v]);
            }
            v
        }
        9 => json!({"unexpected": 1}),
        10 => json!("2999-01-01T00:00:00Z"),
        _ => json!("\u{1b}[31m\u{7f}"),
    }
}

/// `input` with one to four of its members or items replaced, removed or added.
pub fn mutate_json(rng: &mut Rng, input: &Value) -> Value {
    let mut out = input.clone();
    for _ in 0..1 + rng.below(4) {
        mutate_somewhere(rng, &mut out, 0);
    }
    out
}

fn mutate_somewhere(rng: &mut Rng, v: &mut Value, depth: usize) {
    let descend = depth < 12 && rng.below(3) != 0;
    match v {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(rng.below(map.len()))
                .cloned()
                .expect("a key");
            if descend {
                mutate_somewhere(rng, map.get_mut(&key).expect("the key"), depth + 1);
            } else {
                match rng.below(3) {
                    0 => {
                        map.remove(&key);
                    }
                    1 => {
                        map.insert(format!("{key}_extra"), hostile_value(rng));
                    }
                    _ => {
                        map.insert(key, hostile_value(rng));
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let i = rng.below(items.len());
            if descend {
                mutate_somewhere(rng, &mut items[i], depth + 1);
            } else {
                match rng.below(3) {
                    0 => {
                        items.remove(i);
                    }
                    1 => {
                        let copy = items[i].clone();
                        for _ in 0..1 + rng.below(40) {
                            items.push(copy.clone());
                        }
                    }
                    _ => items[i] = hostile_value(rng),
                }
            }
        }
        other => *other = hostile_value(rng),
    }
}

/// The inputs the generators start from: the HL7 v2 fixtures.
pub fn hl7_corpus() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hl7v2");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn fhir_fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/fhir/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// A transaction Bundle of the IG's examples, discharged at `discharged` (RFC 3339),
/// without their narratives (careloop never reads them; the Consent's is 66 KB).
pub fn fhir_bundle(discharged: &str) -> Value {
    let fhir_fixture = |name: &str| {
        let mut v = fhir_fixture(name);
        if let Some(o) = v.as_object_mut() {
            o.remove("text");
        }
        v
    };
    let mut sr = fhir_fixture(
        "ServiceRequest-SDOHCC-ServiceRequestActiveFoodPantryApplicationAssistExample.json",
    );
    sr["occurrenceDateTime"] = json!(discharged);
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "Patient/pat-53234", "resource": fhir_fixture("Patient-pat-53234.json"),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:sr-1", "resource": sr, "request": {"method": "POST", "url": "ServiceRequest"}},
        {"fullUrl": "urn:uuid:consent-1",
         "resource": fhir_fixture("Consent-SDOHCC-ConsentInformationDisclosureExample.json"),
         "request": {"method": "POST", "url": "Consent"}},
    ]})
}

/// The README's `POST /v1/referrals` body, discharged at `discharged` (RFC 3339).
pub fn referral_body(mrn: &str, discharged: &str) -> Value {
    json!({
        "facility": "st-marys",
        "person": {
            "identifiers": [{"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": mrn}],
            "name": {"given": "Alex", "family": "Rivera"},
            "birth_date": "1990-04-12", "phone": "+1-402-555-0134", "language": "en",
            "gender": "female", "postcode": "68102",
            "preferences": {"peer_gender": "female", "lived_experience": ["bipolar"],
                            "contact_modes": ["phone"]}
        },
        "discharge": {"discharged_at": discharged, "unit": "inpatient-psychiatry",
                      "risk_level": "high"},
        "consent": {"granted_at": "2026-11-20T14:00:00Z", "scope": "peer-support-referral",
                    "recorded_by": "discharge planner"},
        "needs": ["emotional"],
        "notes": "Prefers afternoon calls."
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ReferralRequest;
    use crate::domain::NewReferral;
    use crate::hl7::{adt, inbound, mllp};

    /// Runs `check` on `cases()` inputs; a panic names the case that caused it.
    fn run(target: &str, mut check: impl FnMut(&mut Rng, usize)) -> usize {
        let (n, seed) = (cases(), seed());
        let mut rng = Rng::new(seed ^ target.len() as u64);
        for i in 0..n {
            let before = rng.clone();
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut rng, i)));
            if result.is_err() {
                panic!("{target}: case {i} (seed {seed}, rng {before:?}) panicked");
            }
        }
        eprintln!("{target}: {n} cases, seed {seed}, no panic");
        n
    }

    #[test]
    fn fuzz_the_mllp_framer() {
        let corpus: Vec<Vec<u8>> = hl7_corpus().iter().map(|m| mllp::frame_bytes(m)).collect();
        run("mllp framer", |rng, _| {
            let mut buf = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let seed = rng.below(corpus.len());
                buf.extend(mutate_bytes(rng, &corpus[seed]));
            }
            let mut rest: &[u8] = &buf;
            while let Some((message, used)) = mllp::next_frame(rest) {
                assert!(used <= rest.len() && used >= message.len() + 3);
                assert!(!message.windows(2).any(|w| w == mllp::END));
                rest = &rest[used..];
            }
        });
    }

    #[test]
    fn fuzz_the_hl7_adt_reader() {
        let corpus = hl7_corpus();
        let (mut taken, mut refused) = (0, 0);
        run("hl7 adt reader", |rng, _| {
            let seed = rng.below(corpus.len());
            let bytes = mutate_bytes(rng, &corpus[seed]);
            let parsed = adt::read_text(&bytes).and_then(|t| {
                let r = adt::parse(&t);
                r.map_err(|e| (t, e))
            });
            let reply = match parsed {
                Ok(a) => {
                    // What was taken is within the limits.
                    assert!(
                        a.person.identifiers.len() <= 2 * careloop_web::limits::MAX_HL7_REPETITIONS
                    );
                    taken += 1;
                    inbound::ack(&a.header, inbound::AckCode::AA, "ok", None)
                }
                Err((text, _)) => {
                    refused += 1;
                    let header = adt::header(&text).unwrap_or_default();
                    inbound::ack(&header, inbound::AckCode::AR, "refused", Some("PID-3"))
                }
            };
            // Whatever came in, the ACK is one well-formed message.
            let segments: Vec<&str> = reply.split('\r').filter(|s| !s.is_empty()).collect();
            assert!(segments[0].starts_with("MSH|") && segments[1].starts_with("MSA|"));
            assert!(segments.len() <= 3, "{reply:?}");
            assert!(!reply.contains('\n') && !reply.contains('\0'), "{reply:?}");
        });
        eprintln!("hl7 adt reader: {taken} taken, {refused} refused");
        assert!(refused > 0 && taken > 0, "the mutations reach both ways");
    }

    #[test]
    fn fuzz_the_fhir_bundle_reader() {
        let bundle = fhir_bundle("2026-11-20T15:30:00Z");
        let bytes = serde_json::to_vec(&bundle).unwrap();
        run("fhir bundle reader", |rng, i| {
            // Half the cases mutate the document, half its bytes.
            let value = if i % 2 == 0 {
                Some(mutate_json(rng, &bundle))
            } else {
                careloop_web::json::parse_document(&mutate_bytes(rng, &bytes)).ok()
            };
            if let Some(v) = value {
                match crate::fhir::api::read_bundle(&v, "st-marys") {
                    Ok(b) => assert!(b.entries <= careloop_web::limits::MAX_BUNDLE_ENTRIES),
                    Err(o) => assert!(o.status.is_client_error(), "{o:?}"),
                }
            }
        });
    }

    #[test]
    fn fuzz_the_rest_referral_body() {
        let body = referral_body("MRN1", "2026-11-20T15:30:00Z");
        let bytes = serde_json::to_vec(&body).unwrap();
        run("rest referral body", |rng, i| {
            let input = if i % 2 == 0 {
                serde_json::to_vec(&mutate_json(rng, &body)).unwrap()
            } else {
                mutate_bytes(rng, &bytes)
            };
            let refused = match careloop_web::json::parse::<ReferralRequest>(&input) {
                Ok(r) => NewReferral::try_from(r).err(),
                Err(p) => Some(p),
            };
            if let Some(p) = refused {
                assert!(
                    matches!(p.status, 400 | 415 | 422),
                    "a refusal is the client's: {p}"
                );
                assert!(
                    p.status == 400 || p.field.is_some(),
                    "422 names a field: {p}"
                );
            }
        });
    }
}
