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
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Principal {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
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

    /// Who acted, for timelines and audit: the role and the subject.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.sub)
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
