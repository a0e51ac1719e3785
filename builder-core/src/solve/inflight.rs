//! Steps being run right now by any build of one [`super::Builder`], by step key: a build that
//! reaches a step another build is running waits for it and takes its result from the step
//! cache, so two builds of the same Dockerfile posted at once run each step once.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::cancel::Cancel;
use crate::digest::Digest;

use super::{Error, Result};

#[derive(Debug, Default)]
struct Slot {
    done: Mutex<bool>,
    finished: Condvar,
}

/// A waiter's cancel wakes it (the other waiters check their own token and sleep on).
impl crate::cancel::Wake for Slot {
    fn wake(&self) {
        let _done = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        self.finished.notify_all();
    }
}

/// The table; shared by the clones of a builder.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    running: Mutex<HashMap<Digest, Arc<Slot>>>,
}

/// What claiming a step gave.
pub(crate) enum Claim<'a> {
    /// No one else runs it: run it, and keep this until its result is in the step cache.
    Mine(Running<'a>),
    /// Another build ran it (or tried): look in the step cache again.
    Waited,
}

/// A step this build runs; waiters wake when it is dropped.
pub(crate) struct Running<'a> {
    table: &'a Inflight,
    key: Digest,
    slot: Arc<Slot>,
}

impl Inflight {
    /// Claims step `key`, or waits for the build running it (stopping if `cancel` is set).
    pub(crate) fn claim(&self, key: Digest, cancel: &Cancel) -> Result<Claim<'_>> {
        let slot = {
            let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            match running.get(&key) {
                Some(slot) => Arc::clone(slot),
                None => {
                    let slot = Arc::new(Slot::default());
                    running.insert(key, Arc::clone(&slot));
                    return Ok(Claim::Mine(Running {
                        table: self,
                        key,
                        slot,
                    }));
                }
            }
        };
        let weak: std::sync::Weak<dyn crate::cancel::Wake> = Arc::downgrade(&slot) as _;
        cancel.wake_on_cancel(weak);
        let mut done = slot.done.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done {
            if cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            done = slot
                .finished
                .wait(done)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Ok(Claim::Waited)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.table
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        *self
            .slot
            .done
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.slot.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_waits_for_the_first_and_a_later_one_runs() {
        let table = Inflight::default();
        let never = Cancel::new();
        let key = Digest::of(b"step");
        let first = match table.claim(key, &never).unwrap() {
            Claim::Mine(r) => r,
            Claim::Waited => panic!("nobody was running it"),
        };
        let woke = std::thread::scope(|s| {
            let waiter = s.spawn(|| matches!(table.claim(key, &never), Ok(Claim::Waited)));
            std::thread::sleep(std::time::Duration::from_millis(150));
            assert!(!waiter.is_finished(), "the second claim did not wait");
            drop(first);
            waiter.join().unwrap()
        });
        assert!(woke);
        assert!(matches!(table.claim(key, &never), Ok(Claim::Mine(_))));
    }

    #[test]
    fn a_cancelled_waiter_stops_waiting() {
        let table = Inflight::default();
        let key = Digest::of(b"step");
        let never = Cancel::new();
        let _first = table.claim(key, &never).unwrap();
        let cancel = Cancel::new();
        cancel.cancel();
        assert!(matches!(table.claim(key, &cancel), Err(Error::Cancelled)));
    }

    #[test]
    fn a_waiter_wakes_at_its_cancel_while_the_step_still_runs() {
        let table = Inflight::default();
        let key = Digest::of(b"step");
        let _first = table.claim(key, &Cancel::new()).unwrap();
        let cancel = Cancel::new();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| table.claim(key, &cancel).map(|_| ()));
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!waiter.is_finished(), "the claim did not wait");
            cancel.cancel();
            assert!(matches!(waiter.join().unwrap(), Err(Error::Cancelled)));
        });
    }
}
