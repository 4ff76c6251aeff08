//! The closed loop with the referring hospital: every status change of a referral is
//! pushed to the facility's webhook (if it configured one), signed, retried with
//! exponential backoff, and every attempt is recorded.
//!
//! Status changes come from intake's ReferralTask events ([`crate::tasks`]); the
//! [`outbox`] turns each into a delivery row (in the same transaction as its stored
//! position) and a separate [`dispatcher`] sends. So a slow or failing hospital
//! endpoint never blocks or slows the referral itself. Hospitals without a webhook poll
//! `GET /v1/referrals?facility=&updated_since=` instead.

pub mod api;
pub mod destination;
pub mod dispatcher;
pub mod outbox;
pub mod signature;
