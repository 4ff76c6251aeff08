//! Every route's access rule, enforced in one layer before any handler runs.
//!
//! Each service declares, next to its routes, the rule of each (method, path):
//! [`Rule::Open`] (health, metrics, discovery, the token endpoint, the console's
//! assets and sign-in, which authenticate themselves) or [`Rule::Token`], a bearer
//! token whose scopes grant what the route does. The layer verifies the token once,
//! checks the scopes, and hands the principal to the handler, which then checks the
//! role and the record (facility, peer). A route served without a declared rule is
//! refused (fail closed), so a new route cannot be forgotten.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use careloop_access::Needs;

use crate::operation_outcome::refuse;
use crate::{Authenticated, Authenticator, Problem};

#[derive(Debug, Clone, Copy)]
pub enum Rule {
    /// No bearer token: the route is public or authenticates itself.
    Open,
    /// A bearer token whose scopes grant every one of these.
    Token(&'static [Needs]),
}

/// One route and its rule.
#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    pub method: &'static str,
    /// The path as the router has it (`/v1/referrals/{id}`).
    pub path: &'static str,
    pub rule: Rule,
}

impl RouteRule {
    pub const fn open(method: &'static str, path: &'static str) -> Self {
        RouteRule {
            method,
            path,
            rule: Rule::Open,
        }
    }

    pub const fn token(method: &'static str, path: &'static str, needs: &'static [Needs]) -> Self {
        RouteRule {
            method,
            path,
            rule: Rule::Token(needs),
        }
    }
}

/// The rules of every route a process serves.
#[derive(Default)]
pub struct AccessRules(HashMap<(String, String), Rule>);

impl AccessRules {
    pub fn new<'a>(rules: impl IntoIterator<Item = &'a RouteRule>) -> Self {
        AccessRules(
            rules
                .into_iter()
                .map(|r| ((r.method.to_string(), r.path.to_string()), r.rule))
                .collect(),
        )
    }

    pub fn rule(&self, method: &str, path: &str) -> Option<Rule> {
        self.0.get(&(method.to_string(), path.to_string())).copied()
    }
}

/// The layer (`route_layer`, so it runs once a route matched).
pub async fn layer(
    State(rules): State<Arc<AccessRules>>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let method = req.method().as_str().to_string();
    // HEAD is answered by the GET route.
    let lookup = if method == "HEAD" {
        "GET"
    } else {
        method.as_str()
    };
    let Some(rule) = rules.rule(lookup, &path) else {
        tracing::error!(%method, %path, "route served without an access rule; refused");
        return refuse(&path, Problem::forbidden("this route has no access rule"));
    };
    let Rule::Token(needs) = rule else {
        return next.run(req).await;
    };
    let Some(auth) = req.extensions().get::<Arc<Authenticator>>().cloned() else {
        return refuse(&path, Problem::internal("no Authenticator configured"));
    };
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let Some(token) = token else {
        return refuse(
            &path,
            Problem::unauthorized("missing bearer token (Authorization: Bearer ...)"),
        );
    };
    let principal = match auth.verify(&token).await {
        Ok(p) => p,
        Err(e) => return refuse(&path, Problem::unauthorized(e)),
    };
    for need in needs {
        if let Err(denied) = principal.require_scope(*need) {
            return refuse(&path, denied.into());
        }
    }
    req.extensions_mut().insert(Authenticated(principal));
    next.run(req).await
}
