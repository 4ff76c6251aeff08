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
    (
        "_lastUpdated",
        "date",
        "changed after an instant: gt<instant> (the only prefix)",
    ),
    (
        "status",
        "token",
        "Task.status, comma-separated (requested includes received)",
    ),
    (
        "_count",
        "number",
        "Tasks per page, 1 to 500 (100 by default); the next page is the `next` link",
    ),
    (
        "_cursor",
        "string",
        "where the next page starts, as the `next` link gives it",
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
    /// FHIR's code: read, search-type, create, transaction, capabilities.
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
];

const IG_TASK_PROFILE: &str = super::task::PROFILE;

/// The CapabilityStatement for a server at `base` (careloop's public URL).
pub fn statement(base: &str) -> Value {
    let mut resources: Vec<Value> = Vec::new();
    let mut types: Vec<&str> = SURFACE.iter().filter_map(|i| i.resource).collect();
    types.sort_unstable();
    types.dedup();
    for t in types {
        let interactions: Vec<Value> = SURFACE
            .iter()
            .filter(|i| i.resource == Some(t))
            .map(|i| json!({"code": i.code}))
            .collect();
        let mut r = json!({"type": t, "interaction": interactions});
        if t == "Task" {
            r["supportedProfile"] = json!([IG_TASK_PROFILE]);
            r["searchParam"] = json!(
                TASK_SEARCH
                    .iter()
                    .map(|(name, kind, doc)| json!({"name": name, "type": kind, "documentation": doc}))
                    .collect::<Vec<_>>()
            );
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
        assert_eq!(task["interaction"].as_array().unwrap().len(), 2);
        assert_eq!(
            task["searchParam"].as_array().unwrap().len(),
            TASK_SEARCH.len()
        );
        assert_eq!(rest["interaction"][0]["code"], "transaction");
    }
}
