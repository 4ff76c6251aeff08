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
//! it (the store lost an event: a crash, a restore); the copy is forgotten and the
//! command decided again on a fresh load. A refusal or a command that writes nothing
//! gives the store no such chance to object, so when either comes from a copy the
//! command is decided again on a fresh load too ([`crate::store`]'s `run`).
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
/// the assumption that the aggregate is new (`from="new"`, `store::Start::New`), or
/// a load from the store (`from="store"`), per aggregate type. A command decided again
/// on a load (its copy was behind) counts twice. Labels are type names, never ids.
pub static LOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "careloop_command_loads_total",
            "Commands' decisions by what they were decided on: a copy kept from the last command, the aggregate as new, or a load"
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
    /// copy is kept and usable.
    pub fn get(&self, id: &str) -> Option<(A, usize)> {
        let mut g = self.generations.lock().expect("not poisoned");
        if let Some(copy) = g.young.get(id) {
            return copy.usable().then(|| (copy.state.clone(), copy.sequence));
        }
        let copy = g.old.remove(id)?;
        let found = copy.usable().then(|| (copy.state.clone(), copy.sequence));
        g.keep(id.to_string(), copy);
        found
    }

    /// Keeps `state` at `sequence` for `id`, unless a copy at a later sequence is
    /// kept already (a command that committed after this one and kept first).
    pub fn keep(&self, id: &str, state: A, sequence: usize, flush: Option<Flush>) {
        let mut g = self.generations.lock().expect("not poisoned");
        let later = g
            .young
            .get(id)
            .or_else(|| g.old.get(id))
            .is_some_and(|c| c.sequence > sequence);
        if !later {
            g.old.remove(id);
            let copy = Kept {
                state,
                sequence,
                flush,
            };
            g.keep(id.to_string(), copy);
        }
    }
}

impl<A> Recent<A> {
    /// Drops the copy of `id`: the store has moved on without it, or may have.
    pub fn forget(&self, id: &str) {
        let mut g = self.generations.lock().expect("not poisoned");
        g.young.remove(id);
        g.old.remove(id);
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
        assert_eq!(recent.get("a"), None, "not flushed yet");
        flush.done();
        assert_eq!(recent.get("a"), Some((1, 1)));
        recent.keep("a", 3, 3, None);
        recent.keep("a", 2, 2, None);
        assert_eq!(recent.get("a"), Some((3, 3)), "an earlier copy kept late");
        recent.forget("a");
        assert_eq!(recent.get("a"), None);
    }

    #[test]
    fn copies_are_bounded_by_two_generations_and_a_used_one_stays() {
        let recent = Recent::<usize>::new();
        for i in 0..=CAPACITY {
            recent.keep(&i.to_string(), i, 1, None);
        }
        // The young generation was full: the first CAPACITY are now the old one.
        // "0" is used again, which moves it back to the young generation.
        assert_eq!(recent.get("0"), Some((0, 1)));
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
        assert_eq!(recent.get("0"), Some((0, 1)), "a copy used again stays");
    }
}
