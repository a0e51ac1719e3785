//! A build's cancel token: set once (the service's client went away, a job was deleted), seen
//! at once by every part of the build that can take long, none of which polls a flag on a timer:
//!
//! - the sandbox's watchdog sleeps in `poll(2)` on the token's pipe, which becomes readable
//!   when the token is set, and kills the RUN with everything it started;
//! - a step waiting for another stage, or for a step another build is running, sleeps on a
//!   condition variable that [`Cancel::cancel`] wakes ([`Wake`]);
//! - registry requests check it before each attempt and sleep their backoff on it, and bodies
//!   read through [`Cancel::reader`] stop at the next read (pulls, cache imports and exports);
//! - context hashing checks it before each file.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

/// What a cancelled operation fails with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the build was cancelled")]
pub struct Cancelled;

// Not `ErrorKind::Interrupted`: `io::copy` and `read_exact` retry that forever.
impl From<Cancelled> for std::io::Error {
    fn from(c: Cancelled) -> Self {
        std::io::Error::other(c)
    }
}

impl Cancelled {
    /// Whether an I/O error is a [`Cancel::reader`] stopping.
    pub fn is(err: &std::io::Error) -> bool {
        err.get_ref()
            .is_some_and(<dyn std::error::Error + Send + Sync>::is::<Cancelled>)
    }
}

/// Something asleep that a cancel must wake: it takes its lock and notifies its condition
/// variable, so a sleeper that checked the token under that lock cannot miss the wake-up.
pub trait Wake: Send + Sync {
    /// Wakes whoever sleeps on it.
    fn wake(&self);
}

/// A token woken is set: registered on another token, it follows that one (a service's
/// shutdown cancelling each build it runs).
impl Wake for Cancel {
    fn wake(&self) {
        self.cancel();
    }
}

/// A cancel token. Clones share one state; [`Default`] is a token nobody has set yet.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Default)]
struct Inner {
    set: AtomicBool,
    /// Sleepers to wake; dead ones are dropped as new ones come.
    wakers: Mutex<Vec<Weak<dyn Wake>>>,
    /// Readable once set: what `poll(2)` waits on. Made when first asked for.
    pipe: OnceLock<(std::io::PipeReader, std::io::PipeWriter)>,
    /// What [`Cancel::sleep`] sleeps on.
    sleep: (Mutex<()>, Condvar),
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Cancel {
    /// A token not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the token and wakes everything waiting on it. Setting it again does nothing.
    pub fn cancel(&self) {
        if self.0.set.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some((_, writer)) = self.0.pipe.get() {
            let _ = (&*writer).write(&[1]);
        }
        {
            let _guard = self
                .0
                .sleep
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.0.sleep.1.notify_all();
        }
        let wakers =
            std::mem::take(&mut *self.0.wakers.lock().unwrap_or_else(PoisonError::into_inner));
        for w in wakers.iter().filter_map(Weak::upgrade) {
            w.wake();
        }
    }

    /// Whether the token is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// [`Cancelled`] once the token is set.
    ///
    /// # Errors
    /// The token is set.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps `duration`, or less if the token is set meanwhile.
    ///
    /// # Errors
    /// The token is (or became) set.
    pub fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        let deadline = std::time::Instant::now() + duration;
        let mut guard = self
            .0
            .sleep
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            self.check()?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            guard = self
                .0
                .sleep
                .1
                .wait_timeout(guard, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Wakes `sleeper` when the token is set (at once if it is already).
    pub fn wake_on_cancel(&self, sleeper: Weak<dyn Wake>) {
        let strong = sleeper.upgrade();
        {
            let mut wakers = self.0.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            wakers.retain(|w| w.strong_count() > 0);
            wakers.push(sleeper);
        }
        // Set before it was listed: the cancel may have taken the list without it.
        if let Some(s) = strong.filter(|_| self.is_cancelled()) {
            s.wake();
        }
    }

    /// A descriptor that becomes readable when the token is set, for `poll(2)`.
    ///
    /// # Errors
    /// No pipe could be made (out of descriptors).
    pub fn fd(&self) -> std::io::Result<BorrowedFd<'_>> {
        if self.0.pipe.get().is_none() {
            let pipe = std::io::pipe()?;
            // Whoever loses the race drops its pipe.
            let _ = self.0.pipe.set(pipe);
        }
        let (reader, writer) = self
            .0
            .pipe
            .get()
            .ok_or_else(|| std::io::Error::other("the cancel pipe went away"))?;
        // Set before the pipe existed: nothing wrote to it yet.
        if self.is_cancelled() {
            let _ = (&*writer).write(&[1]);
        }
        Ok(reader.as_fd())
    }

    /// `inner`, whose reads fail with [`Cancelled`] (see [`Cancelled::is`]) once the token is
    /// set (a registry body, a blob being copied).
    pub fn reader<R: Read>(&self, inner: R) -> Reader<R> {
        Reader {
            inner,
            cancel: self.clone(),
        }
    }
}

/// See [`Cancel::reader`].
pub struct Reader<R> {
    inner: R,
    cancel: Cancel,
}

impl<R: Read> Read for Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.cancel.check()?;
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleeper {
        woke: Mutex<bool>,
        cv: Condvar,
    }

    impl Wake for Sleeper {
        fn wake(&self) {
            *self.woke.lock().unwrap() = true;
            self.cv.notify_all();
        }
    }

    #[test]
    fn a_cancel_wakes_a_sleeper_registered_before_and_one_registered_after() {
        let cancel = Cancel::new();
        let before = Arc::new(Sleeper {
            woke: Mutex::new(false),
            cv: Condvar::new(),
        });
        cancel.wake_on_cancel(Arc::downgrade(&before) as Weak<dyn Wake>);
        let waiter = {
            let before = Arc::clone(&before);
            std::thread::spawn(move || {
                let mut woke = before.woke.lock().unwrap();
                while !*woke {
                    woke = before.cv.wait(woke).unwrap();
                }
            })
        };
        cancel.cancel();
        waiter.join().unwrap();
        let after = Arc::new(Sleeper {
            woke: Mutex::new(false),
            cv: Condvar::new(),
        });
        cancel.wake_on_cancel(Arc::downgrade(&after) as Weak<dyn Wake>);
        assert!(*after.woke.lock().unwrap());
    }

    #[test]
    fn a_token_registered_on_another_follows_it_while_it_is_kept() {
        let parent = Cancel::new();
        let kept = Arc::new(Cancel::new());
        let dropped = Arc::new(Cancel::new());
        parent.wake_on_cancel(Arc::downgrade(&kept) as Weak<dyn Wake>);
        parent.wake_on_cancel(Arc::downgrade(&dropped) as Weak<dyn Wake>);
        let dropped_token = (*dropped).clone();
        drop(dropped);
        parent.cancel();
        assert!(kept.is_cancelled());
        assert!(!dropped_token.is_cancelled());
    }

    #[test]
    fn the_pipe_is_readable_once_set_whenever_it_was_made() {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let readable = |c: &Cancel| {
            let fd = c.fd().unwrap();
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
        };
        let early = Cancel::new();
        assert!(!readable(&early));
        early.cancel();
        assert!(readable(&early));
        let late = Cancel::new();
        late.cancel();
        assert!(readable(&late));
    }

    #[test]
    fn a_sleep_ends_at_the_cancel_and_reads_fail_after_it() {
        let cancel = Cancel::new();
        assert_eq!(cancel.sleep(Duration::from_millis(1)), Ok(()));
        let other = cancel.clone();
        let t = std::thread::spawn(move || other.sleep(Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(50));
        cancel.cancel();
        assert_eq!(t.join().unwrap(), Err(Cancelled));
        let mut r = cancel.reader(&b"data"[..]);
        let err = std::io::copy(&mut r, &mut std::io::sink()).unwrap_err();
        assert!(Cancelled::is(&err), "{err}");
    }
}
