//! The aggregates a process has just written, kept so that its next command on one
//! of them skips the load.
//!
//! A referral's commands come in runs on the same few aggregates (its Referral, its
//! Assignment, the Peer holding it, its DischargeRecord, its task), and each command
//! used to load the aggregate's whole stream back from Postgres: a statement, its
//! round trips and the decoding of every event, for a Peer every reservation it ever
//! made. After a command commits, [`store`](crate::store) keeps the aggregate as
//! the command left it, with its sequence, and the next command starts from there.
//!
//! **Why a stale copy cannot decide a write.** A command's events are stored at the
//! sequences that follow the state it was decided on: the events table's primary
//! key refuses a sequence that is taken, and the append writes nothing unless the
//! event before its first is stored (`store`'s `append_statement`). A copy behind the
//! store (another instance wrote since, or another command of this one that
//! finished first) therefore makes the append conflict, and so does a copy ahead of
//! it (the store lost an event: a crash, a restore); the copy is marked behind and
//! the command decided again on the store's latest: the copy with the events stored
//! after it applied, or a fresh load (the copy dropped) when the store no longer
//! holds the copy's last event. A refusal or a command that writes nothing gives the
//! store no such chance to object, so when either comes from a copy the command is
//! decided again on the store's latest too ([`crate::store`]'s `run`).
//!
//! **Why a copy never holds an event a crash took back.** A consumer's commands
//! commit without waiting for the disk (`store::flushed_by_caller`): a crash of
//! Postgres can lose them, with the consumer's position, and the message is delivered
//! again. A copy of what such a command wrote would outlive that crash in memory. So
//! it is kept with the consumer's [`Flush`], and used only once the consumer's own
//! durable commit has succeeded: that commit's transaction began before the command
//! ran, so had Postgres crashed in between, the commit would have failed with its
//! connection; having succeeded, it flushed the write-ahead log up to and past the
//! command's events. What a durable command wrote is usable at once.
//!
//! **Behind a pending copy, the last usable one.** Several commands on one aggregate
//! often run close together in different consumer batches (referrals reserving the
//! same peer): the copy the last of them left waits for its batch's commit, and the
//! next command would have to load the whole stream, for a Peer every reservation
//! it ever made. So a copy that waits keeps the last usable copy before it, and
//! [`Recent::get`] gives that one as [`Found::Earlier`]: the store reads only the
//! events after it (`store`'s catch-up), which is the store's latest as a load is.
//!
//! **Shared.** Every command processor of one aggregate type over one pool and schema
//! shares one set of copies ([`shared`]): a service makes several processors for one
//! aggregate (intake's tasks for its API and for its consumer), and separate copies
//! would keep conflicting with each other. A different pool (a second instance) has
//! its own, and meets the first through the conflicts above.
//!
//! **Bounded.** Two generations of [`CAPACITY`] copies each: when the young one is
//! full it becomes the old one and the old one is dropped. A copy used again moves
//! to the young generation. Sealed stores (PHI) keep no copies: the clear values
//! stay in memory no longer than a command.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use prometheus::{IntCounterVec, Opts, register_int_counter_vec};
use sqlx::PgPool;

/// Copies per generation, per aggregate type: a few thousand referrals in flight.
pub const CAPACITY: usize = 4096;

/// Commands' decisions by what they were decided on: a kept copy (`from="recent"`),
/// the assumption that the aggregate is new (`from="new"`, `store::Start::New`), a
/// copy brought up to date with the events stored after it (`from="catch-up"`), or a
/// load of the whole stream (`from="store"`), per aggregate type. Each attempt of a
/// command counts (a command decided again counts again). Labels are type names,
/// never ids.
pub static LOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "careloop_command_loads_total",
            "Commands' decisions by what they were decided on: a copy kept from the last command, the aggregate as new, a copy caught up with the events after it, or a load"
        ),
        &["aggregate", "from"]
    )
    .expect("metric registers once")
});

/// Whether what a consumer's handler wrote has reached the disk: set once the
/// consumer's own durable commit, begun before the handler ran, has succeeded.
#[derive(Clone, Default, Debug)]
pub struct Flush(Arc<AtomicBool>);

impl Flush {
    /// The consumer's durable commit succeeded.
    pub fn done(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn is_done(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

struct Kept<A> {
    state: A,
    sequence: usize,
    /// `None`: written durably. `Some`: usable once that flush is done.
    flush: Option<Flush>,
    /// While this copy waits for its flush: the last usable copy before it.
    earlier: Option<Box<(A, usize)>>,
    /// The store may have moved on past this copy (an append decided on it, or on an
    /// earlier state, failed): it is a state to catch up from, not to decide on.
    behind: bool,
}

/// A kept copy of an aggregate, as [`Recent::get`] finds it.
#[derive(Debug, PartialEq)]
pub enum Found<A> {
    /// The aggregate as the last command on it left it, and its sequence: a command
    /// may be decided on it.
    Latest(A, usize),
    /// A usable copy, and its sequence, that the store may have moved on from: the
    /// last one before a copy waiting for its flush, or one an append failed on. A
    /// command is decided on it once the events stored after it are applied.
    Earlier(A, usize),
}

impl<A> Kept<A> {
    fn usable(&self) -> bool {
        self.flush.as_ref().is_none_or(Flush::is_done)
    }
}

struct Generations<A> {
    young: HashMap<String, Kept<A>>,
    old: HashMap<String, Kept<A>>,
}

/// The copies of one aggregate type's recently written aggregates.
pub struct Recent<A> {
    generations: Mutex<Generations<A>>,
}

impl<A: Clone> Recent<A> {
    fn new() -> Self {
        Recent {
            generations: Mutex::new(Generations {
                young: HashMap::new(),
                old: HashMap::new(),
            }),
        }
    }

    /// The aggregate as the last command on it left it, and its sequence, when that
    /// copy is kept and usable; while it waits for its flush, the last usable copy
    /// before it, if one was kept.
    pub fn get(&self, id: &str) -> Option<Found<A>> {
        let mut g = self.generations.lock().expect("not poisoned");
        if !g.young.contains_key(id) {
            let copy = g.old.remove(id)?;
            g.keep(id.to_string(), copy);
        }
        let copy = g.young.get_mut(id)?;
        if copy.usable() {
            copy.earlier = None;
            let state = copy.state.clone();
            return Some(match copy.behind {
                true => Found::Earlier(state, copy.sequence),
                false => Found::Latest(state, copy.sequence),
            });
        }
        let earlier = copy.earlier.as_deref()?;
        Some(Found::Earlier(earlier.0.clone(), earlier.1))
    }

    /// Keeps `state` at `sequence` for `id`, unless a copy at a later sequence is
    /// kept already (a command that committed after this one and kept first). A copy
    /// that waits for `flush` keeps the last usable one before it.
    pub fn keep(&self, id: &str, state: A, sequence: usize, flush: Option<Flush>) {
        let mut g = self.generations.lock().expect("not poisoned");
        let before = g.young.remove(id).or_else(|| g.old.remove(id));
        let earlier = match before {
            Some(later) if later.sequence > sequence => {
                g.keep(id.to_string(), later);
                return;
            }
            Some(before) if flush.is_some() => match before.usable() {
                true => Some(Box::new((before.state, before.sequence))),
                false => before.earlier,
            },
            _ => None,
        };
        let copy = Kept {
            state,
            sequence,
            flush,
            earlier,
            behind: false,
        };
        g.keep(id.to_string(), copy);
    }

    /// Marks the copy of `id` as behind the store, unless it is later than `sequence`
    /// (the state an append that failed was decided on; a later copy was kept by a
    /// command that succeeded since): the next command catches it up instead of
    /// deciding on it and failing again. Kept rather than dropped, so that commands
    /// on a busy aggregate (a peer several referrals reserve at once) catch up from
    /// it instead of loading the whole stream.
    pub fn behind(&self, id: &str, sequence: usize) {
        let mut g = self.generations.lock().expect("not poisoned");
        let Generations { young, old } = &mut *g;
        if let Some(copy) = young.get_mut(id).or_else(|| old.get_mut(id)) {
            copy.behind |= copy.sequence <= sequence;
        }
    }
}

impl<A> Recent<A> {
    /// Drops the copy of `id`: the store has moved on without it, or may have.
    pub fn forget(&self, id: &str) {
        self.forget_at(id, usize::MAX);
    }

    /// Drops the copy of `id`, and the usable one it keeps, unless it is a usable
    /// copy later than `sequence` (kept by a command that wrote since): the store does
    /// not hold the event at `sequence`, so a copy up to it describes what the store
    /// lost, and so may a waiting copy's earlier one.
    pub fn forget_at(&self, id: &str, sequence: usize) {
        let mut g = self.generations.lock().expect("not poisoned");
        let later = g
            .young
            .get(id)
            .or_else(|| g.old.get(id))
            .is_some_and(|c| c.usable() && c.sequence > sequence);
        if !later {
            g.young.remove(id);
            g.old.remove(id);
        }
    }
}

impl<A> Generations<A> {
    fn keep(&mut self, id: String, copy: Kept<A>) {
        if self.young.len() >= CAPACITY && !self.young.contains_key(&id) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(id, copy);
    }
}

type Key = (Arc<sqlx::postgres::PgConnectOptions>, String, TypeId);
type Entry = (Key, Arc<dyn Any + Send + Sync>);

/// One [`Recent`] per pool, schema and aggregate type. The key holds the pool's
/// connect options, so a dropped pool's address is never taken for a new pool's.
static SHARED: LazyLock<Mutex<Vec<Entry>>> = LazyLock::new(|| Mutex::new(Vec::new()));

/// The copies every command processor of `A` over `pool` and `schema` shares.
///
/// The registry keeps an entry per pool for the life of the process (a service makes
/// its pool once; a test process, one per test database).
pub fn shared<A>(pool: &PgPool, schema: &str) -> Arc<Recent<A>>
where
    A: Clone + Send + 'static,
{
    let options = pool.connect_options();
    let mut all = SHARED.lock().expect("not poisoned");
    let found = all
        .iter()
        .find(|((o, s, t), _)| Arc::ptr_eq(o, &options) && s == schema && *t == TypeId::of::<A>());
    if let Some(recent) = found.and_then(|(_, r)| r.clone().downcast::<Recent<A>>().ok()) {
        return recent;
    }
    let recent = Arc::new(Recent::<A>::new());
    all.push((
        (options, schema.to_string(), TypeId::of::<A>()),
        recent.clone() as Arc<dyn Any + Send + Sync>,
    ));
    recent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_waits_for_its_flush_and_a_later_one_is_not_replaced() {
        let recent = Recent::<u32>::new();
        let flush = Flush::default();
        recent.keep("a", 1, 1, Some(flush.clone()));
        assert_eq!(
            recent.get("a"),
            None,
            "not flushed yet, nothing usable before it"
        );
        flush.done();
        assert_eq!(recent.get("a"), Some(Found::Latest(1, 1)));
        recent.keep("a", 3, 3, None);
        recent.keep("a", 2, 2, None);
        assert_eq!(
            recent.get("a"),
            Some(Found::Latest(3, 3)),
            "an earlier copy kept late"
        );
        recent.forget("a");
        assert_eq!(recent.get("a"), None);
    }

    #[test]
    fn a_waiting_copy_keeps_the_last_usable_one_before_it() {
        let recent = Recent::<u32>::new();
        recent.keep("a", 1, 1, None);
        let first = Flush::default();
        recent.keep("a", 2, 2, Some(first.clone()));
        assert_eq!(recent.get("a"), Some(Found::Earlier(1, 1)));
        let second = Flush::default();
        recent.keep("a", 3, 3, Some(second.clone()));
        assert_eq!(
            recent.get("a"),
            Some(Found::Earlier(1, 1)),
            "the copy between them never became usable"
        );
        first.done();
        recent.keep("a", 4, 4, Some(Flush::default()));
        assert_eq!(
            recent.get("a"),
            Some(Found::Earlier(1, 1)),
            "a copy found waiting when the next was kept is not a starting point"
        );
        second.done();
        recent.keep("a", 5, 5, None);
        assert_eq!(recent.get("a"), Some(Found::Latest(5, 5)));
    }

    #[test]
    fn a_copy_found_behind_is_caught_up_until_a_later_one_is_kept() {
        let recent = Recent::<u32>::new();
        recent.keep("a", 1, 1, None);
        recent.behind("a", 1);
        assert_eq!(recent.get("a"), Some(Found::Earlier(1, 1)));
        recent.keep("a", 3, 3, None);
        assert_eq!(recent.get("a"), Some(Found::Latest(3, 3)));
        recent.behind("a", 2);
        assert_eq!(
            recent.get("a"),
            Some(Found::Latest(3, 3)),
            "a failure decided on an earlier state says nothing of a later copy"
        );
        recent.forget_at("a", 2);
        assert_eq!(recent.get("a"), Some(Found::Latest(3, 3)), "later: kept");
        recent.forget_at("a", 3);
        assert_eq!(recent.get("a"), None);

        recent.keep("a", 1, 1, None);
        recent.keep("a", 2, 2, Some(Flush::default()));
        recent.forget_at("a", 1);
        assert_eq!(
            recent.get("a"),
            None,
            "a waiting copy's earlier one describes what the store lost"
        );
    }

    #[test]
    fn copies_are_bounded_by_two_generations_and_a_used_one_stays() {
        let recent = Recent::<usize>::new();
        for i in 0..=CAPACITY {
            recent.keep(&i.to_string(), i, 1, None);
        }
        // The young generation was full: the first CAPACITY are now the old one.
        // "0" is used again, which moves it back to the young generation.
        assert_eq!(recent.get("0"), Some(Found::Latest(0, 1)));
        for i in CAPACITY + 1..=2 * CAPACITY {
            recent.keep(&i.to_string(), i, 1, None);
        }
        let g = recent.generations.lock().unwrap();
        assert!(g.young.len() + g.old.len() <= 2 * CAPACITY);
        drop(g);
        assert_eq!(
            recent.get("1"),
            None,
            "the oldest unused copies are dropped"
        );
        assert_eq!(
            recent.get("0"),
            Some(Found::Latest(0, 1)),
            "a copy used again stays"
        );
    }
}
