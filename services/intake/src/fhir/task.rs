//! The Task that tracks a referral (SDOHCC-TaskForReferralManagement), with its
//! status mirroring the referral's. The IG's Task status value set leaves out
//! `received`: a received referral shows as `requested` with `businessStatus`
//! saying received.

use serde_json::{Value, json};

pub const PROFILE: &str =
    "http://hl7.org/fhir/us/sdoh-clinicalcare/StructureDefinition/SDOHCC-TaskForReferralManagement";

pub use crate::tasks::read_model::{TaskRow, get, search};

/// Who performs every Task: careloop's peer-support organisation (`owner`).
pub const OWNER: &str = "Organization/careloop";

/// The Task resource for a referral in `row`'s state, as version `version`.
pub fn render(row: &TaskRow, version: usize) -> Value {
    let fhir_status = match row.status.as_str() {
        "received" | "requested" => "requested",
        other => other,
    };
    let mut task = json!({
        "resourceType": "Task",
        "id": row.referral_id,
        "meta": {"profile": [PROFILE], "versionId": version.to_string(),
                 "lastUpdated": row.last_updated},
        "status": fhir_status,
        "businessStatus": {"text": row.status},
        "intent": "order",
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
        "focus": {"reference": format!("ServiceRequest/{}", row.referral_id)},
        "requester": {"reference": format!("Organization/{}", row.facility), "display": row.facility},
        "owner": {"reference": OWNER, "display": "careloop peer support"},
        "lastModified": row.last_updated,
    });
    if let Some(p) = &row.person_ref {
        task["for"] = json!({"reference": format!("Patient/{p}")});
    }
    if let Some(a) = row.authored_on {
        task["authoredOn"] = json!(a);
    }
    let reason = row.reason.as_deref().filter(|r| !r.is_empty());
    if let ("rejected" | "cancelled" | "on-hold" | "failed" | "entered-in-error", Some(r)) =
        (row.status.as_str(), reason)
    {
        task["statusReason"] = json!({"text": r});
    }
    if matches!(row.status.as_str(), "completed" | "failed") {
        task["output"] = json!([{
            "type": {"coding": [{
                "system": "http://hl7.org/fhir/us/sdoh-clinicalcare/CodeSystem/SDOHCC-CodeSystemTemporaryCodes",
                "code": "resulting-activity",
                "display": "Resulting Activity"
            }]},
            "valueString": format!("peer support follow-up {}: {}", row.status, reason.unwrap_or("closed")),
        }]);
    }
    task
}
