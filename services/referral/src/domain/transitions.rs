//! The referral status machine (FHIR Task statuses, SDOH Clinical Care IG): which
//! action moves a referral from which statuses to which, and who may ask for it.
//!
//! The aggregate checks every command against this table, the API checks roles
//! against it, and `docs/referral-status.md` is generated from it (a test keeps the
//! document and the code the same).

use super::Status;
use careloop_access::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Receive,
    Accept,
    StartFollowUp,
    Reject,
    Hold,
    Resume,
    Cancel,
    EnterInError,
    Reroute,
    Complete,
    Fail,
}

/// Where an action leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    To(Status),
    /// Back to the status the referral had before it was put on hold.
    StatusBeforeHold,
}

pub struct Transition {
    pub action: Action,
    pub name: &'static str,
    pub from: &'static [Status],
    pub to: Target,
    /// The roles that may ask for it through the API; empty: only the system does.
    pub roles: &'static [Role],
    /// What triggers it or what it needs.
    pub note: &'static str,
}

use Status::*;

const OPEN: &[Status] = &[Received, Accepted, OnHold, InProgress];

pub const TRANSITIONS: &[Transition] = &[
    Transition {
        action: Action::Receive,
        name: "receive",
        from: &[Requested],
        to: Target::To(Received),
        roles: &[],
        note: "ReferralSubmitted from intake",
    },
    Transition {
        action: Action::Accept,
        name: "accept",
        from: &[Received],
        to: Target::To(Accepted),
        roles: &[],
        note: "PeerAssigned from peer-assignment",
    },
    Transition {
        action: Action::StartFollowUp,
        name: "start follow-up",
        from: &[Accepted],
        to: Target::To(InProgress),
        roles: &[],
        note: "the first ContactRecorded with outcome reached",
    },
    Transition {
        action: Action::Complete,
        name: "complete",
        from: &[Accepted, InProgress, OnHold],
        to: Target::To(Completed),
        roles: &[],
        note: "FollowUpClosed with outcome completed",
    },
    Transition {
        action: Action::Fail,
        name: "fail",
        from: &[Accepted, InProgress, OnHold],
        to: Target::To(Failed),
        roles: &[],
        note: "FollowUpClosed with outcome failed (the person could not be reached)",
    },
    Transition {
        action: Action::Reject,
        name: "reject",
        from: &[Received, Accepted, OnHold],
        to: Target::To(Rejected),
        roles: &[Role::Coordinator, Role::Admin],
        note: "coded reason: no_capacity, out_of_area, declined_by_person, unable_to_reach, other (+ text)",
    },
    Transition {
        action: Action::Hold,
        name: "hold",
        from: &[Received, Accepted, InProgress],
        to: Target::To(OnHold),
        roles: &[Role::Coordinator, Role::Admin],
        note: "reason",
    },
    Transition {
        action: Action::Resume,
        name: "resume",
        from: &[OnHold],
        to: Target::StatusBeforeHold,
        roles: &[Role::Coordinator, Role::Admin],
        note: "reason",
    },
    Transition {
        action: Action::Cancel,
        name: "cancel",
        from: OPEN,
        to: Target::To(Cancelled),
        roles: &[Role::Coordinator, Role::Admin, Role::Hospital],
        note: "reason; a hospital only for its own facility",
    },
    Transition {
        action: Action::EnterInError,
        name: "entered-in-error",
        from: &[
            Received, Accepted, Rejected, Cancelled, OnHold, InProgress, Failed, Completed,
        ],
        to: Target::To(EnteredInError),
        roles: &[Role::Coordinator, Role::Admin],
        note: "reason; excluded from every measure",
    },
    Transition {
        action: Action::Reroute,
        name: "reroute",
        from: &[Rejected],
        to: Target::To(Received),
        roles: &[Role::Coordinator, Role::Admin],
        note: "back to matching; only when CARELOOP_REROUTE_AFTER_REJECT=true",
    },
];

pub fn transition(action: Action) -> &'static Transition {
    TRANSITIONS
        .iter()
        .find(|t| t.action == action)
        .expect("every action has a row")
}

/// The status `action` leads to from `from`, or `None` when it is not allowed.
pub fn next(action: Action, from: Status, before_hold: Option<Status>) -> Option<Status> {
    let t = transition(action);
    if !t.from.contains(&from) {
        return None;
    }
    match t.to {
        Target::To(s) => Some(s),
        Target::StatusBeforeHold => before_hold.or(Some(Received)),
    }
}

/// The table as Markdown, for `docs/referral-status.md`.
pub fn markdown_table() -> String {
    let mut out = String::from("| action | from | to | who | note |\n|---|---|---|---|---|\n");
    for t in TRANSITIONS {
        let from: Vec<&str> = t.from.iter().map(|s| s.as_str()).collect();
        let to = match t.to {
            Target::To(s) => s.as_str(),
            Target::StatusBeforeHold => "the status before hold",
        };
        let who = if t.roles.is_empty() {
            "careloop (event)".to_string()
        } else {
            t.roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            t.name,
            from.join(", "),
            to,
            who,
            t.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Status; 10] = [
        Requested,
        Received,
        Accepted,
        Rejected,
        Cancelled,
        OnHold,
        InProgress,
        Failed,
        Completed,
        EnteredInError,
    ];

    #[test]
    fn the_documented_table_is_the_code() {
        let doc = include_str!("../../../../docs/referral-status.md");
        assert!(
            doc.contains(&markdown_table()),
            "docs/referral-status.md is out of date; it must contain:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn final_statuses_only_allow_entered_in_error_or_reroute() {
        for status in ALL.into_iter().filter(|s| s.is_final()) {
            for t in TRANSITIONS {
                let allowed = next(t.action, status, None).is_some();
                let expected = matches!(
                    (t.action, status),
                    (Action::EnterInError, s) if s != EnteredInError
                ) || (t.action == Action::Reroute && status == Rejected);
                assert_eq!(allowed, expected, "{} from {}", t.name, status.as_str());
            }
        }
    }
}
