//! The same discharge referred over REST, FHIR and HL7 v2 becomes the same
//! integration event, field for field (only the channel differs): every channel goes
//! through [`NewReferral`], which derives the priority, the region, the matching
//! inputs and the referral's id once.

use careloop_events::{Channel, Payload};
use serde_json::json;

use crate::domain::{Consent, NewReferral};

const PERSON_REF: &str = "7f0c1a52-0000-4000-8000-000000000001";

fn over_rest() -> NewReferral {
    let body = json!({
        "facility": "st-marys",
        "person": {
            "identifiers": [{"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": "MRN777"}],
            "name": {"given": "Alex", "family": "Rivera"},
            "birth_date": "1990-04-12",
            "phone": "+1-402-555-0134",
            "language": "en",
            "gender": "female",
            "postcode": "68102"
        },
        "discharge": {"discharged_at": "2026-11-20T15:30:00Z",
                      "unit": "inpatient-psychiatry", "risk_level": "moderate"},
        "consent": {"granted_at": "2026-11-20T14:00:00Z", "scope": "peer-support-referral",
                    "recorded_by": "discharge planner"}
    });
    let request: crate::api::ReferralRequest =
        careloop_web::json::parse(body.to_string().as_bytes()).unwrap();
    NewReferral::try_from(request).unwrap()
}

fn over_fhir() -> NewReferral {
    let bundle = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:p", "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": "MRN777"}],
                "name": [{"family": "Rivera", "given": ["Alex"]}],
                "birthDate": "1990-04-12",
                "telecom": [{"system": "phone", "value": "+1-402-555-0134"}],
                "gender": "female",
                "address": [{"postalCode": "68102"}],
                "communication": [{"language": {"coding": [{"code": "en-US"}]}}]}},
            {"resource": {
                "resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "priority": "urgent",
                "subject": {"reference": "urn:uuid:p"},
                "extension": [
                    {"url": crate::fhir::read::DISCHARGE_EXTENSION,
                     "valueDateTime": "2026-11-20T15:30:00Z"},
                    {"url": crate::fhir::read::UNIT_EXTENSION,
                     "valueString": "inpatient-psychiatry"}]}},
            {"resource": {
                "resourceType": "Consent", "status": "active",
                "patient": {"reference": "urn:uuid:p"},
                "dateTime": "2026-11-20T14:00:00Z",
                "scope": {"coding": [{"code": "peer-support-referral"}]},
                "performer": [{"display": "discharge planner"}]}}
        ]
    });
    crate::fhir::api::read_bundle(&bundle, "st-marys")
        .unwrap_or_else(|e| panic!("{e:?}"))
        .referral
}

fn over_hl7() -> NewReferral {
    let message = [
        "MSH|^~\\&|EHR|ST MARYS|CARELOOP|CL|20261120153500||ADT^A03^ADT_A03|M777|P|2.5",
        "EVN|A03|20261120153000",
        "PID|1||MRN777^^^HOSP&2.16.840.1.113883.3.999.1&ISO^MR||Rivera^Alex||19900412|F|||1 Main St^^Omaha^NE^68102||+1-402-555-0134||ENG",
        "PV1|1|I|inpatient-psychiatry|||||||||||||||||||||||||||||||||||||||||20261101090000|20261120153000",
        "ZPS|Y|20261120140000|discharge planner|moderate",
    ]
    .join("\r");
    let adt = crate::hl7::adt::parse(&message).unwrap();
    let flag = adt.flag.clone().unwrap();
    let consent = Consent {
        granted_at: flag.consent_at.unwrap(),
        scope: "peer-support-referral".into(),
        recorded_by: flag.recorded_by,
    };
    let discharged_at = adt.discharged_at.unwrap();
    let unit = adt.unit.clone().unwrap();
    crate::hl7::inbound::referral_from_discharge(&adt, discharged_at, unit, consent).unwrap()
}

fn integration_event(r: &NewReferral) -> careloop_events::v1::ReferralSubmitted {
    match crate::integration::submitted(r.submitted_for(PERSON_REF)) {
        Payload::ReferralSubmitted(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_same_discharge_over_every_channel_is_the_same_integration_event() {
    let rest = integration_event(&over_rest());
    assert_eq!(Channel::from_proto(rest.channel), Channel::Api);
    assert_eq!(rest.matching.as_ref().unwrap().region, "681");
    for (name, referral) in [("FHIR", over_fhir()), ("HL7 v2", over_hl7())] {
        let mut event = integration_event(&referral);
        assert_ne!(event.channel, rest.channel, "{name} names its channel");
        event.channel = rest.channel;
        assert_eq!(event, rest, "{name} and REST differ");
    }
}
