//! Who may do what in careloop: the roles and the verified principal of a request.
//!
//! Plain types with no HTTP in them, so domain modules (the referral status machine
//! names the roles that may ask for each action) use them without depending on the
//! web crate; `careloop-web` turns a bearer token into a [`Principal`] and an
//! [`AccessDenied`] into a 403.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Hospital,
    Coordinator,
    Peer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Hospital, Role::Coordinator, Role::Peer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Hospital => "hospital",
            Role::Coordinator => "coordinator",
            Role::Peer => "peer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; use hospital, coordinator, peer or admin"))
    }
}

/// The verified identity behind a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Principal {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// The scopes granted, space-separated (SMART: `system/Task.read` for a
    /// hospital's system, `user/*.*` for staff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The registered client the token was issued to (a hospital's system, or the
    /// console).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A person's display name, for staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The least privileged role, for principals built field by field.
impl Default for Role {
    fn default() -> Self {
        Role::Peer
    }
}

/// What a route does to a resource, for scope checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A SMART scope a route needs: `<resource>.read` or `<resource>.write` (SMART v1),
/// or the v2 letters (`r`/`s` read, `c`/`u`/`d` write), in the `system`, `user` or
/// `patient` context; `*` stands for any resource or any access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub resource: &'static str,
    pub access: Access,
}

impl Needs {
    pub const fn read(resource: &'static str) -> Self {
        Needs {
            resource,
            access: Access::Read,
        }
    }

    pub const fn write(resource: &'static str) -> Self {
        Needs {
            resource,
            access: Access::Write,
        }
    }

    pub fn describe(&self) -> String {
        let a = match self.access {
            Access::Read => "read",
            Access::Write => "write",
        };
        format!("system/{}.{a}", self.resource)
    }
}

/// Whether one scope (`system/Task.read`, `user/*.*`, `system/Task.rs`) grants `needs`.
pub fn scope_grants(scope: &str, needs: Needs) -> bool {
    let Some((context, rest)) = scope.split_once('/') else {
        return false;
    };
    if !matches!(context, "system" | "user" | "patient") {
        return false;
    }
    let Some((resource, access)) = rest.rsplit_once('.') else {
        return false;
    };
    if resource != "*" && resource != needs.resource {
        return false;
    }
    match access {
        "*" => true,
        "read" => needs.access == Access::Read,
        "write" => needs.access == Access::Write,
        letters if !letters.is_empty() && letters.chars().all(|c| "cruds".contains(c)) => {
            match needs.access {
                Access::Read => letters.contains('r') || letters.contains('s'),
                Access::Write => {
                    letters.contains('c') || letters.contains('u') || letters.contains('d')
                }
            }
        }
        _ => false,
    }
}

/// A refusal: the principal may not do this (the HTTP edge answers 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessDenied(pub String);

impl std::fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AccessDenied {}

impl Principal {
    /// Refused unless the principal has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), AccessDenied> {
        if roles.contains(&self.role) {
            return Ok(());
        }
        Err(AccessDenied(format!(
            "role {} may not do this; allowed: {}",
            self.role.as_str(),
            roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Whose `Idempotency-Key`s this request's key is among: the client, never the
    /// token (a token's `sub` may change when it is renewed). A hospital's keys belong
    /// to its facility and registered client; a peer's to their roster entry; other
    /// staff's to their account (the OpenID subject, stable across sign-ins).
    pub fn idempotency_scope(&self) -> String {
        match self.role {
            Role::Hospital => format!(
                "hospital:{}:{}",
                self.facility.as_deref().unwrap_or_default(),
                self.client_id.as_deref().unwrap_or_default()
            ),
            Role::Peer => format!(
                "peer:{}",
                self.peer_id.as_deref().unwrap_or(self.sub.as_str())
            ),
            role => format!("{}:{}", role.as_str(), self.sub),
        }
    }

    /// Hospitals see only their own facility's records; other roles see all.
    pub fn may_see_facility(&self, facility: &str) -> bool {
        self.role != Role::Hospital || self.facility.as_deref() == Some(facility)
    }

    /// The facility a hospital acts for; `None` for every other role.
    pub fn own_facility(&self) -> Option<&str> {
        match self.role {
            Role::Hospital => self.facility.as_deref(),
            _ => None,
        }
    }

    /// Refused unless the token's scopes grant `needs`.
    pub fn require_scope(&self, needs: Needs) -> Result<(), AccessDenied> {
        let granted = self
            .scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .any(|s| scope_grants(s, needs));
        if granted {
            Ok(())
        } else {
            Err(AccessDenied(format!(
                "the token's scopes do not allow this; it needs {}",
                needs.describe()
            )))
        }
    }

    /// Who acted, for timelines: the person's name and role when the token names
    /// them, else the role and the subject (a hospital's system: its client id).
    pub fn actor(&self) -> String {
        match &self.name {
            Some(name) if !name.is_empty() => format!("{name} ({})", self.role.as_str()),
            _ => format!("{} {}", self.role.as_str(), self.sub),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(role: Role, facility: Option<&str>) -> Principal {
        Principal {
            sub: "s".into(),
            role,
            facility: facility.map(String::from),
            peer_id: None,
            exp: 0,
            ..Default::default()
        }
    }

    #[test]
    fn hospitals_see_only_their_facility() {
        assert!(p(Role::Hospital, Some("a")).may_see_facility("a"));
        assert!(!p(Role::Hospital, Some("a")).may_see_facility("b"));
        assert!(p(Role::Coordinator, None).may_see_facility("b"));
        assert!(p(Role::Admin, None).require(&[Role::Admin]).is_ok());
        assert!(p(Role::Peer, None).require(&[Role::Admin]).is_err());
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn smart_v1_and_v2_scopes_grant_what_they_say() {
        let task_read = Needs::read("Task");
        let sr_write = Needs::write("ServiceRequest");
        assert!(scope_grants("system/Task.read", task_read));
        assert!(scope_grants("system/Task.rs", task_read));
        assert!(scope_grants("system/*.read", task_read));
        assert!(scope_grants("user/*.*", sr_write));
        assert!(scope_grants("system/ServiceRequest.c", sr_write));
        assert!(!scope_grants("system/Task.read", sr_write));
        assert!(!scope_grants("system/ServiceRequest.read", sr_write));
        assert!(!scope_grants("system/ServiceRequest.rs", sr_write));
        assert!(!scope_grants("launch/patient", task_read));
        assert!(!scope_grants("system/Task.x", task_read));
        let p = Principal {
            scope: Some("system/Task.read system/ServiceRequest.write".into()),
            ..Default::default()
        };
        assert!(p.require_scope(task_read).is_ok());
        assert!(p.require_scope(Needs::write("Consent")).is_err());
    }
}
