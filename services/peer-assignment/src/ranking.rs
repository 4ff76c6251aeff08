//! Ranking peers for one referral: hard constraints first, then a weighted score,
//! then a deterministic tie-break. A pure function, so it is tested and benchmarked
//! without a database.
//!
//! Hard constraints, in the order they are checked (a peer excluded by several
//! counts once, under the first): available (not on leave or inactive), a
//! certification that has not expired (a peer with none on record is not held back),
//! free capacity, a shared language, the person's preferred peer gender when given, and
//! the person's region when in-person contact is the only mode that works for them.
//!
//! Score terms, each between 0 and 1 and multiplied by its weight
//! (`CARELOOP_MATCH_WEIGHTS`): lived experience (the share of the person's
//! lived-experience preferences and needs the peer shares), region (the peer serves
//! the person's postcode prefix), continuity (the peer supported this person on an
//! earlier referral) and load (the free share of the peer's caseload). Ties go to the
//! lower peer id.

use std::collections::{BTreeMap, HashSet};

use careloop_config::MatchWeights;
use serde::Serialize;

pub use careloop_events::MatchingInputs;

/// A peer as the roster read model has them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RosterPeer {
    pub peer_id: String,
    pub languages: Vec<String>,
    pub gender: Option<String>,
    pub lived_experience: Vec<String>,
    pub regions: Vec<String>,
    pub max_caseload: i32,
    pub active_count: i32,
    /// Takes referrals now (active, or back from leave).
    pub available: bool,
    /// The certification on record ended before today.
    pub certification_expired: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Terms {
    pub lived_experience: f64,
    pub region: f64,
    pub continuity: f64,
    pub load: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    pub peer_id: String,
    pub score: f64,
    /// Each term before weighting (0..1).
    pub terms: Terms,
    pub shared_lived_experience: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Ranking {
    pub candidates: Vec<Candidate>,
    /// How many peers each hard constraint excluded.
    pub excluded: BTreeMap<&'static str, usize>,
}

/// Ranks `peers` for `wanted`. `history` holds the peers who supported this person
/// before; `skip` the peers not to propose again (full, declined, handed back).
pub fn rank(
    wanted: &MatchingInputs,
    peers: &[RosterPeer],
    history: &HashSet<String>,
    skip: &[String],
    weights: &MatchWeights,
) -> Ranking {
    let mut ranking = Ranking::default();
    let tags: HashSet<&str> = wanted
        .lived_experience
        .iter()
        .chain(&wanted.needs)
        .map(String::as_str)
        .collect();
    let in_person_only =
        !wanted.contact_modes.is_empty() && wanted.contact_modes.iter().all(|m| m == "in_person");
    for p in peers {
        let serves_region = wanted.region.as_deref().is_some_and(|r| {
            p.regions
                .iter()
                .any(|pr| !pr.is_empty() && (r.starts_with(pr.as_str()) || pr.starts_with(r)))
        });
        let excluded_by = if !p.available {
            Some("availability")
        } else if p.certification_expired {
            Some("certification")
        } else if p.active_count >= p.max_caseload {
            Some("capacity")
        } else if !p.languages.contains(&wanted.language) {
            Some("language")
        } else if wanted
            .preferred_peer_gender
            .as_ref()
            .is_some_and(|g| p.gender.as_ref() != Some(g))
        {
            Some("gender")
        } else if in_person_only && !serves_region {
            Some("region")
        } else if skip.contains(&p.peer_id) {
            Some("declined")
        } else {
            None
        };
        if let Some(c) = excluded_by {
            *ranking.excluded.entry(c).or_default() += 1;
            continue;
        }
        let shared: Vec<String> = p
            .lived_experience
            .iter()
            .filter(|t| tags.contains(t.as_str()))
            .cloned()
            .collect();
        let terms = Terms {
            lived_experience: if tags.is_empty() {
                0.0
            } else {
                shared.len() as f64 / tags.len() as f64
            },
            region: if serves_region { 1.0 } else { 0.0 },
            continuity: if history.contains(&p.peer_id) {
                1.0
            } else {
                0.0
            },
            load: 1.0 - p.active_count.max(0) as f64 / p.max_caseload.max(1) as f64,
        };
        let score = weights.lived_experience * terms.lived_experience
            + weights.region * terms.region
            + weights.continuity * terms.continuity
            + weights.load * terms.load;
        ranking.candidates.push(Candidate {
            peer_id: p.peer_id.clone(),
            score: (score * 1e6).round() / 1e6,
            terms,
            shared_lived_experience: shared,
        });
    }
    ranking.candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.peer_id.cmp(&b.peer_id))
    });
    ranking
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEIGHTS: MatchWeights = MatchWeights {
        lived_experience: 3.0,
        region: 1.0,
        continuity: 2.0,
        load: 1.0,
    };

    fn peer(
        id: &str,
        langs: &[&str],
        gender: &str,
        lived: &[&str],
        regions: &[&str],
    ) -> RosterPeer {
        RosterPeer {
            peer_id: id.into(),
            languages: langs.iter().map(|s| s.to_string()).collect(),
            gender: Some(gender.into()),
            lived_experience: lived.iter().map(|s| s.to_string()).collect(),
            regions: regions.iter().map(|s| s.to_string()).collect(),
            max_caseload: 10,
            active_count: 0,
            available: true,
            certification_expired: false,
        }
    }

    fn wanted() -> MatchingInputs {
        MatchingInputs {
            language: "en".into(),
            preferred_peer_gender: Some("female".into()),
            lived_experience: vec!["bipolar".into(), "lgbtq".into()],
            needs: vec![],
            contact_modes: vec!["phone".into()],
            region: Some("681".into()),
        }
    }

    #[test]
    fn hard_constraints_exclude_and_are_counted() {
        let mut full = peer("full", &["en"], "female", &[], &[]);
        full.active_count = 10;
        let mut away = peer("away", &["en"], "female", &[], &[]);
        away.available = false;
        let peers = vec![
            full,
            away,
            peer("es-only", &["es"], "female", &[], &[]),
            peer("male", &["en"], "male", &[], &[]),
            peer("fits", &["en", "es"], "female", &[], &[]),
        ];
        let r = rank(&wanted(), &peers, &HashSet::new(), &[], &WEIGHTS);
        assert_eq!(r.candidates.len(), 1);
        assert_eq!(r.candidates[0].peer_id, "fits");
        let excluded: Vec<(&str, usize)> = r.excluded.into_iter().collect();
        assert_eq!(
            excluded,
            [
                ("availability", 1),
                ("capacity", 1),
                ("gender", 1),
                ("language", 1)
            ]
        );
    }

    #[test]
    fn in_person_only_needs_the_region() {
        let mut w = wanted();
        w.contact_modes = vec!["in_person".into()];
        let peers = vec![
            peer("far", &["en"], "female", &[], &["680"]),
            peer("near", &["en"], "female", &[], &["68"]),
        ];
        let r = rank(&w, &peers, &HashSet::new(), &[], &WEIGHTS);
        let ids: Vec<&str> = r.candidates.iter().map(|c| c.peer_id.as_str()).collect();
        assert_eq!(ids, ["near"]);
        assert_eq!(r.excluded["region"], 1);
    }

    #[test]
    fn the_score_weighs_lived_experience_region_continuity_and_load() {
        let mut busy = peer("busy", &["en"], "female", &["bipolar", "lgbtq"], &[]);
        busy.active_count = 5;
        let peers = vec![
            busy,
            peer("local", &["en"], "female", &[], &["681"]),
            peer("known", &["en"], "female", &[], &[]),
        ];
        let history: HashSet<String> = ["known".to_string()].into();
        let r = rank(&wanted(), &peers, &history, &[], &WEIGHTS);
        let scores: Vec<(&str, f64)> = r
            .candidates
            .iter()
            .map(|c| (c.peer_id.as_str(), c.score))
            .collect();
        // busy: 3×1 + 1×0.5 = 3.5; known: 2×1 + 1×1 = 3; local: 1×1 + 1×1 = 2.
        assert_eq!(scores, [("busy", 3.5), ("known", 3.0), ("local", 2.0)]);
        assert_eq!(
            r.candidates[0].shared_lived_experience,
            ["bipolar", "lgbtq"]
        );
    }

    #[test]
    fn ties_break_on_peer_id_and_skipped_peers_are_left_out() {
        let peers = vec![
            peer("b", &["en"], "female", &[], &[]),
            peer("a", &["en"], "female", &[], &[]),
            peer("c", &["en"], "female", &[], &[]),
        ];
        let r = rank(&wanted(), &peers, &HashSet::new(), &["a".into()], &WEIGHTS);
        let ids: Vec<&str> = r.candidates.iter().map(|c| c.peer_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(r.excluded["declined"], 1);
    }
}
