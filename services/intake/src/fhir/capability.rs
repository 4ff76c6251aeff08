//! `GET /fhir/metadata`: the CapabilityStatement, made from the same table the routes
//! are checked against ([`SURFACE`]), so what it says careloop does is what careloop
//! serves (test: `capability_statement_matches_the_routes`, and the edge test that
//! calls every interaction it lists).

use serde_json::{Value, json};

/// The search parameters `GET /fhir/Task` applies; any other is refused (400) unless
/// the client asks for lenient handling.
pub const TASK_SEARCH: &[(&str, &str, &str)] = &[
    (
        "focus",
        "reference",
        "the ServiceRequest the Task fulfils: ServiceRequest/{id}",
    ),
    ("patient", "reference", "the person: Patient/{id}"),
    (
        "owner",
        "reference",
        "who performs the Task: Organization/careloop for every Task",
    ),
    (
        "requester",
        "reference",
        "the referring facility: Organization/{facility}",
    ),
    (
        "status",
        "token",
        "Task.status, comma-separated (requested includes received)",
    ),
    (
        "code",
        "token",
        "Task.code: fulfill (http://hl7.org/fhir/CodeSystem/task-code)",
    ),
    (
        "_lastUpdated",
        "date",
        "last change, with gt, ge, lt or le; repeat for a range",
    ),
    (
        "_count",
        "number",
        "entries per page, 1 to 500 (100 by default)",
    ),
    (
        "_cursor",
        "string",
        "where the next page starts, as the `next` link gives it",
    ),
    (
        "_total",
        "token",
        "accurate: count every match (otherwise given when one page holds all)",
    ),
];

/// The search parameters `GET /fhir/ServiceRequest` applies.
pub const SERVICE_REQUEST_SEARCH: &[(&str, &str, &str)] = &[
    ("patient", "reference", "the person: Patient/{id}"),
    (
        "status",
        "token",
        "ServiceRequest.status, comma-separated: active, completed, revoked, entered-in-error",
    ),
    (
        "_lastUpdated",
        "date",
        "last change of the referral, with gt, ge, lt or le; repeat for a range",
    ),
    (
        "_count",
        "number",
        "entries per page, 1 to 500 (100 by default)",
    ),
    (
        "_cursor",
        "string",
        "where the next page starts, as the `next` link gives it",
    ),
    (
        "_total",
        "token",
        "accurate: count every match (otherwise given when one page holds all)",
    ),
];

/// One FHIR interaction careloop serves: its route, and how the CapabilityStatement
/// says it.
#[derive(Debug, Clone, Copy)]
pub struct Interaction {
    pub method: &'static str,
    pub path: &'static str,
    /// The resource type, or `None` for a system-level interaction.
    pub resource: Option<&'static str>,
    /// FHIR's code: read, vread, history-instance, search-type, create, transaction,
    /// capabilities.
    pub code: &'static str,
}

/// Everything careloop's FHIR edge serves.
pub const SURFACE: &[Interaction] = &[
    Interaction {
        method: "GET",
        path: "/fhir/metadata",
        resource: None,
        code: "capabilities",
    },
    Interaction {
        method: "POST",
        path: "/fhir",
        resource: None,
        code: "transaction",
    },
    Interaction {
        method: "POST",
        path: "/fhir/ServiceRequest",
        resource: Some("ServiceRequest"),
        code: "create",
    },
    Interaction {
        method: "POST",
        path: "/fhir/Consent",
        resource: Some("Consent"),
        code: "create",
    },
    Interaction {
        method: "GET",
        path: "/fhir/ServiceRequest/{id}",
        resource: Some("ServiceRequest"),
        code: "read",
    },
    Interaction {
        method: "GET",
        path: "/fhir/Patient/{id}",
        resource: Some("Patient"),
        code: "read",
    },
    Interaction {
        method: "GET",
        path: "/fhir/Task",
        resource: Some("Task"),
        code: "search-type",
    },
    Interaction {
        method: "GET",
        path: "/fhir/Task/{id}",
        resource: Some("Task"),
        code: "read",
    },
    Interaction {
        method: "GET",
        path: "/fhir/Task/{id}/_history/{vid}",
        resource: Some("Task"),
        code: "vread",
    },
    Interaction {
        method: "GET",
        path: "/fhir/Task/{id}/_history",
        resource: Some("Task"),
        code: "history-instance",
    },
    Interaction {
        method: "GET",
        path: "/fhir/ServiceRequest",
        resource: Some("ServiceRequest"),
        code: "search-type",
    },
    Interaction {
        method: "GET",
        path: "/fhir/Consent/{id}",
        resource: Some("Consent"),
        code: "read",
    },
    Interaction {
        method: "POST",
        path: "/fhir/Subscription",
        resource: Some("Subscription"),
        code: "create",
    },
    Interaction {
        method: "GET",
        path: "/fhir/Subscription/{id}",
        resource: Some("Subscription"),
        code: "read",
    },
    Interaction {
        method: "DELETE",
        path: "/fhir/Subscription/{id}",
        resource: Some("Subscription"),
        code: "delete",
    },
    Interaction {
        method: "GET",
        path: "/fhir/Subscription/{id}/$status",
        resource: Some("Subscription"),
        code: "$status",
    },
];

/// The Subscriptions Backport IG's server statement, which careloop meets for its
/// Task topic (rest-hook; id-only and full-resource; handshake, heartbeat, $status).
pub const BACKPORT_SERVER: &str = "http://hl7.org/fhir/uv/subscriptions-backport/CapabilityStatement/backport-subscription-server-r4";

const IG_TASK_PROFILE: &str = super::task::PROFILE;

/// The CapabilityStatement for a server at `base` (careloop's public URL).
pub fn statement(base: &str) -> Value {
    let mut resources: Vec<Value> = Vec::new();
    let mut types: Vec<&str> = SURFACE.iter().filter_map(|i| i.resource).collect();
    types.sort_unstable();
    types.dedup();
    for t in types {
        // An operation (`$status`) is listed as one, the rest as interactions.
        let interactions: Vec<Value> = SURFACE
            .iter()
            .filter(|i| i.resource == Some(t) && !i.code.starts_with('$'))
            .map(|i| json!({"code": i.code}))
            .collect();
        let operations: Vec<Value> = SURFACE
            .iter()
            .filter(|i| i.resource == Some(t) && i.code.starts_with('$'))
            .map(|i| json!({"name": &i.code[1..],
                "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status"}))
            .collect();
        let mut r = json!({"type": t, "interaction": interactions});
        if !operations.is_empty() {
            r["operation"] = json!(operations);
        }
        let params = |table: &[(&str, &str, &str)]| {
            json!(
                table
                    .iter()
                    .map(|(name, kind, doc)| json!({"name": name, "type": kind, "documentation": doc}))
                    .collect::<Vec<_>>()
            )
        };
        match t {
            "Task" => {
                r["supportedProfile"] = json!([IG_TASK_PROFILE]);
                r["versioning"] = json!("versioned");
                r["readHistory"] = json!(true);
                r["searchParam"] = params(TASK_SEARCH);
            }
            "ServiceRequest" => r["searchParam"] = params(SERVICE_REQUEST_SEARCH),
            "Subscription" => {
                r["extension"] = json!([{
                    "url": "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/capabilitystatement-subscriptiontopic-canonical",
                    "valueCanonical": crate::subscriptions::TOPIC,
                }]);
                r["supportedProfile"] = json!([
                    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"
                ]);
            }
            _ => {}
        }
        resources.push(r);
    }
    let system: Vec<Value> = SURFACE
        .iter()
        .filter(|i| i.resource.is_none() && i.code == "transaction")
        .map(|i| json!({"code": i.code}))
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "publisher": "careloop",
        "kind": "instance",
        "instantiates": [BACKPORT_SERVER],
        "implementation": {"description": "careloop: hospital discharge to peer support", "url": format!("{base}/fhir")},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Referrals the SDOH Clinical Care IG way: a transaction Bundle (Patient, ServiceRequest, Consent), the Task that tracks each referral.",
            "security": {
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": format!("{base}/auth/token")}]
                }],
                "description": "SMART Backend Services (private_key_jwt); discovery at /.well-known/smart-configuration"
            },
            "resource": resources,
            "interaction": system,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every FHIR route has an entry in the surface, and every entry a route: the
    /// statement cannot promise what is not served, nor hide what is.
    #[test]
    fn capability_statement_matches_the_routes() {
        let mut routes: Vec<(&str, &str)> = super::super::api::RULES
            .iter()
            .map(|r| (r.method, r.path))
            .collect();
        let mut surface: Vec<(&str, &str)> = SURFACE.iter().map(|i| (i.method, i.path)).collect();
        routes.sort_unstable();
        surface.sort_unstable();
        assert_eq!(routes, surface);
        let s = statement("https://careloop.example");
        let rest = &s["rest"][0];
        let task = rest["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Task")
            .unwrap();
        assert_eq!(task["interaction"].as_array().unwrap().len(), 4);
        assert_eq!(
            task["searchParam"].as_array().unwrap().len(),
            TASK_SEARCH.len()
        );
        assert_eq!(rest["interaction"][0]["code"], "transaction");
    }
}
