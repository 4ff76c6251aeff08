//! How fast matching is at the sizes issue 5 names: a roster of 5,000 peers and a
//! waitlist of 10,000 referrals. Pure computation on in-memory data (the ranking the
//! service runs after reading the roster), timed with `Instant` over many runs.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use careloop_config::MatchWeights;
use careloop_peer_assignment::ranking::{MatchingInputs, RosterPeer, rank};

const LANGUAGES: [&str; 5] = ["en", "es", "zh", "vi", "so"];
const GENDERS: [&str; 3] = ["female", "male", "nonbinary"];
const TAGS: [&str; 10] = [
    "bipolar",
    "depression",
    "psychosis",
    "substance use",
    "lgbtq",
    "veteran",
    "youth",
    "parent",
    "disability benefits",
    "medication experience",
];

/// A small deterministic generator (no extra dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() as usize) % from.len()]
    }
}

fn roster(n: usize, rng: &mut Lcg) -> Vec<RosterPeer> {
    (0..n)
        .map(|i| {
            let max = 5 + (rng.next() % 16) as i32;
            RosterPeer {
                peer_id: format!("peer-{i:05}"),
                languages: vec!["en".into(), rng.pick(&LANGUAGES).into()],
                gender: Some(rng.pick(&GENDERS).into()),
                lived_experience: (0..3).map(|_| rng.pick(&TAGS).to_string()).collect(),
                regions: vec![format!("68{}", rng.next() % 10)],
                max_caseload: max,
                active_count: (rng.next() % (max as u64 + 1)) as i32,
                available: !rng.next().is_multiple_of(10),
                certification_expired: rng.next().is_multiple_of(50),
            }
        })
        .collect()
}

fn wanted(rng: &mut Lcg) -> MatchingInputs {
    MatchingInputs {
        language: rng.pick(&LANGUAGES).into(),
        preferred_peer_gender: rng
            .next()
            .is_multiple_of(2)
            .then(|| rng.pick(&GENDERS).to_string()),
        lived_experience: vec![rng.pick(&TAGS).into(), rng.pick(&TAGS).into()],
        needs: vec!["emotional".into()],
        contact_modes: if rng.next().is_multiple_of(4) {
            vec!["in_person".into()]
        } else {
            vec!["phone".into()]
        },
        region: Some(format!("68{}", rng.next() % 10)),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let weights = MatchWeights {
        lived_experience: 3.0,
        region: 1.0,
        continuity: 2.0,
        load: 1.0,
    };
    let mut rng = Lcg(42);
    let peers = roster(5_000, &mut rng);
    let history: HashSet<String> = ["peer-00042".to_string()].into();

    // One referral ranked against the whole roster.
    let mut times = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        let w = wanted(&mut rng);
        let start = Instant::now();
        black_box(rank(&w, &peers, &history, &[], &weights));
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "rank one referral against 5,000 peers: p50 {:?}, p99 {:?}, max {:?} ({} runs)",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().unwrap(),
        times.len()
    );

    // A waitlist pass: 10,000 waiting referrals, in order, against a full roster in
    // which 200 slots just freed up (the worker stops once no peer has room).
    let mut passes = Vec::new();
    for _ in 0..5 {
        let mut full: Vec<RosterPeer> = peers
            .iter()
            .cloned()
            .map(|mut p| {
                p.active_count = p.max_caseload;
                p
            })
            .collect();
        for p in full.iter_mut().step_by(25) {
            p.active_count -= 1; // 200 free slots
        }
        let waitlist: Vec<MatchingInputs> = (0..10_000).map(|_| wanted(&mut rng)).collect();
        let start = Instant::now();
        let mut assigned = 0;
        for w in &waitlist {
            if !full
                .iter()
                .any(|p| p.available && p.active_count < p.max_caseload)
            {
                break;
            }
            let r = rank(w, &full, &history, &[], &weights);
            if let Some(best) = r.candidates.first() {
                let p = full.iter_mut().find(|p| p.peer_id == best.peer_id).unwrap();
                p.active_count += 1;
                assigned += 1;
            }
        }
        passes.push((start.elapsed(), assigned));
    }
    passes.sort();
    let (median, assigned) = passes[passes.len() / 2];
    println!(
        "waitlist pass, 10,000 waiting, 200 slots freed on a 5,000-peer roster: {median:?} (median of {} passes; {assigned} assigned)",
        passes.len()
    );
}
