//! `Remote`: post work to a reactor, or stop it, from any thread.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use mio::Waker;

use super::Reactor;
use crate::error::{Error, SocketErrorStatus};

pub(crate) type Posted<S> = Box<dyn FnOnce(&mut Reactor<S>, &mut S) + Send>;

#[derive(Default)]
pub(crate) struct Shared {
    stop: AtomicBool,
}

impl Shared {
    #[inline]
    pub(crate) fn take_stop(&self) -> bool {
        // A plain load first: the loop asks every turn, and a stop is rare; the swap
        // (a locked instruction) only when there is one to take.
        self.stop.load(Ordering::Relaxed) && self.stop.swap(false, Ordering::AcqRel)
    }
}

/// A `Send + Clone` handle to a [`Reactor`], for other threads.
///
/// Closures posted with [`post`](Remote::post) run on the reactor's thread, in the
/// order they were posted, with the same `&mut` access to the reactor and the state
/// that handlers get. The reactor is woken through an eventfd (`mio::Waker`).
///
/// # Examples
///
/// ```
/// use sockloop::Reactor;
///
/// let mut reactor = Reactor::<Vec<String>>::new()?;
/// let remote = reactor.remote();
/// let worker = std::thread::spawn(move || {
///     remote.post(|reactor, log| {
///         log.push("hello from another thread".into());
///         reactor.stop();
///     })
/// });
/// // Keep the loop alive until the post arrives: a timer far in the future.
/// let timer = reactor.set_timer(std::time::Duration::from_secs(10), |_, _, _| {});
/// let mut log = Vec::new();
/// reactor.run(&mut log)?;
/// worker.join().unwrap()?;
/// reactor.cancel_timer(timer)?;
/// assert_eq!(log, ["hello from another thread"]);
/// # Ok::<(), sockloop::Error>(())
/// ```
pub struct Remote<S: 'static> {
    tx: Sender<Posted<S>>,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
}

impl<S: 'static> Remote<S> {
    pub(crate) fn new(tx: Sender<Posted<S>>, waker: Arc<Waker>, shared: Arc<Shared>) -> Remote<S> {
        Remote { tx, waker, shared }
    }

    /// Runs `job` on the reactor's thread at its next turn.
    ///
    /// # Errors
    ///
    /// `InvalidHandle` if the reactor is gone; the job is dropped unrun.
    pub fn post(
        &self,
        job: impl FnOnce(&mut Reactor<S>, &mut S) + Send + 'static,
    ) -> Result<(), Error> {
        self.tx.send(Box::new(job)).map_err(|_| {
            Error::new(SocketErrorStatus::InvalidHandle, "post").with_detail("the reactor is gone")
        })?;
        self.wake()
    }

    /// Makes the reactor's [`run`](Reactor::run) return after its current turn.
    ///
    /// # Errors
    ///
    /// When the wake-up cannot be written (the reactor is gone).
    pub fn stop(&self) -> Result<(), Error> {
        self.shared.stop.store(true, Ordering::Release);
        self.wake()
    }

    fn wake(&self) -> Result<(), Error> {
        self.waker
            .wake()
            .map_err(|e| Error::from_io("wake reactor", e))
    }
}

impl<S: 'static> Clone for Remote<S> {
    fn clone(&self) -> Self {
        Remote {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: 'static> fmt::Debug for Remote<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote").finish_non_exhaustive()
    }
}
