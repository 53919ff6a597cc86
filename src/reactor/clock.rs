//! How the poll waits for a deadline: epoll's millisecond timeout where it is exact
//! enough, a timerfd where it is not.
//!
//! epoll takes its timeout in whole milliseconds, and mio rounds up so as never to
//! wake early: a 100 µs wait became 1 ms, a 1.5 ms one 2 ms; and the kernel lets an
//! epoll timeout run late by its timer slack (50 µs, or 0.1% of the wait if more). For
//! a deadline nearer than [`FAR`], or whose rounding would make it late by more than
//! [`TOLERANCE`], the clock arms a timerfd (`CLOCK_MONOTONIC`, absolute time, no
//! slack) registered in the poll under [`CLOCK`], and the poll waits for it.
//!
//! Why a timerfd rather than `epoll_pwait2` (nanosecond timeouts, Linux 5.11): mio owns
//! the epoll call and its event buffer, and offers no way to fill `mio::Events` from a
//! call of ours; a timerfd needs nothing from mio but a registration, and works on
//! every kernel mio supports.
//!
//! What it costs:
//! - Nothing when no deadline is pending, when the wait is zero, or when the deadline
//!   is at least [`FAR`] away and falls on a whole millisecond from now (within
//!   [`TOLERANCE`]): `turn(Some(100 ms))` and a `run` with no timers make the same
//!   system calls as before. The descriptor
//!   is created on first use, so a reactor that never needs it never has one.
//! - One `timerfd_settime` when the earliest deadline changes; none on the turns that
//!   follow while it stays the same (the time is absolute, so the arming stays right).
//!   Counted in [`Stats::timer_arms`](super::Stats::timer_arms).
//! - An arming left behind by a cancelled deadline is not undone: if it expires, the
//!   turn sees only the clock's event, finds no deadline reached, and polls again.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};

use crate::io::sys;

/// The token of the clock's timerfd. Never produced by a `Key`: its generation would
/// be `u32::MAX`, which the registry never hands out (like the waker's, `usize::MAX`).
pub(crate) const CLOCK: Token = Token(usize::MAX - 1);

/// The most a wait may overshoot its deadline through millisecond rounding before the
/// timerfd is used instead. The kernel adds its own slack to an epoll timeout (the
/// thread's timer slack, 50 µs by default, or 0.1% of the wait if larger).
pub(crate) const TOLERANCE: Duration = Duration::from_micros(20);

/// From how far away a deadline a whole number of milliseconds from now is left to
/// epoll's timeout. Nearer, the kernel's slack on that timeout (50 µs at least) would
/// be a large part of the wait, and the timerfd (no slack) times it instead.
pub(crate) const FAR: Duration = Duration::from_millis(20);

/// How late epoll's millisecond timeout may end a wait: the rounding up to the next
/// millisecond.
pub(crate) const LENIENCE: Duration = Duration::from_millis(1);

/// A second chance should the timerfd never fire (it always should): the poll's own
/// timeout is set this far past the deadline, so no wait can hang.
const BACKSTOP: Duration = Duration::from_millis(1);

/// The reactor's precise clock: a timerfd made on first use and the deadline it is
/// armed for.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    fd: Option<OwnedFd>,
    /// The deadline the timerfd was last armed for (it may have passed).
    armed: Option<Instant>,
    /// Creating or arming the timerfd failed: use the millisecond path from now on.
    broken: bool,
}

impl Clock {
    /// The poll timeout that wakes the poller at `deadline`, neither early nor (beyond
    /// a few microseconds of wake-up latency) late; arms the timerfd when epoll's
    /// millisecond timeout cannot. `arms` counts the armings.
    #[inline]
    pub(crate) fn wait_for(
        &mut self,
        poll: &Poll,
        deadline: Option<Instant>,
        lenient: bool,
        arms: &mut u64,
    ) -> Option<Duration> {
        // No deadline (a busy socket, no timers): nothing to compute.
        let deadline = deadline?;
        self.wait_until(poll, deadline, lenient, arms)
    }

    /// `lenient`: waking up to [`LENIENCE`] late is fine (the deadline is one of the
    /// reactor's own timers), so a far deadline takes epoll's millisecond timeout.
    fn wait_until(
        &mut self,
        poll: &Poll,
        deadline: Instant,
        lenient: bool,
        arms: &mut u64,
    ) -> Option<Duration> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero()
            || self.broken
            || (left >= FAR && (lenient || rounding(left) <= TOLERANCE))
        {
            // mio rounds `left` up to whole milliseconds: never early.
            return Some(left);
        }
        if self.armed != Some(deadline) {
            if let Err(e) = self.arm(poll, deadline) {
                log::warn!("timerfd unusable, timeouts round up to milliseconds: {e}");
                self.broken = true;
                return Some(left);
            }
            *arms += 1;
        }
        Some(left.saturating_add(BACKSTOP))
    }

    fn arm(&mut self, poll: &Poll, deadline: Instant) -> std::io::Result<()> {
        if self.fd.is_none() {
            let fd = sys::timerfd_monotonic()?;
            poll.registry()
                .register(&mut SourceFd(&fd.as_raw_fd()), CLOCK, Interest::READABLE)?;
            self.fd = Some(fd);
        }
        let Some(fd) = &self.fd else {
            unreachable!("created above")
        };
        // Forget the old arming first: should this one fail, it is unknown.
        self.armed = None;
        sys::timerfd_arm_at(fd.as_fd(), deadline)?;
        self.armed = Some(deadline);
        Ok(())
    }
}

/// How much later than `left` a wait of `left` rounded up to milliseconds ends.
fn rounding(left: Duration) -> Duration {
    let sub = left.subsec_nanos() % 1_000_000;
    if sub == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(u64::from(1_000_000 - sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_the_next_millisecond() {
        let us = Duration::from_micros;
        assert_eq!(rounding(us(0)), us(0));
        assert_eq!(rounding(us(100)), us(900));
        assert_eq!(rounding(us(1000)), us(0));
        assert_eq!(rounding(us(1500)), us(500));
        assert_eq!(rounding(us(4990)), us(10));
        assert_eq!(rounding(Duration::from_secs(3)), us(0));
    }

    #[test]
    fn no_deadline_or_a_past_one_needs_no_timerfd() {
        let poll = Poll::new().unwrap();
        let mut clock = Clock::default();
        let mut arms = 0;
        assert_eq!(clock.wait_for(&poll, None, false, &mut arms), None);
        let past = Instant::now();
        assert_eq!(
            clock.wait_for(&poll, Some(past), false, &mut arms),
            Some(Duration::ZERO)
        );
        assert_eq!(arms, 0);
        assert!(clock.fd.is_none());
    }

    #[test]
    fn far_whole_milliseconds_need_no_timerfd() {
        let poll = Poll::new().unwrap();
        let mut clock = Clock::default();
        let mut arms = 0;
        // Measured from a moment ago: the rounding is the time since, microseconds at
        // most unless the machine stalls the test (then the timerfd is right).
        let deadline = Instant::now() + Duration::from_millis(50);
        let wait = clock
            .wait_for(&poll, Some(deadline), false, &mut arms)
            .unwrap();
        assert!(wait <= Duration::from_millis(50));
        assert!(arms <= 1);
        // Near: the timerfd, whatever the rounding.
        let deadline = Instant::now() + Duration::from_millis(5);
        clock
            .wait_for(&poll, Some(deadline), false, &mut arms)
            .unwrap();
        assert!(arms >= 1);
    }

    #[test]
    fn a_lenient_far_deadline_needs_no_timerfd_a_near_one_does() {
        let poll = Poll::new().unwrap();
        let mut clock = Clock::default();
        let mut arms = 0;
        // Between two milliseconds: only leniency keeps it on epoll's timeout.
        let deadline = Instant::now() + Duration::from_micros(50_500);
        let wait = clock
            .wait_for(&poll, Some(deadline), true, &mut arms)
            .unwrap();
        assert!(wait <= Duration::from_micros(50_500), "{wait:?}");
        assert_eq!(arms, 0);
        assert!(clock.fd.is_none());
        clock
            .wait_for(&poll, Some(deadline), false, &mut arms)
            .unwrap();
        assert_eq!(arms, 1, "a precise deadline between milliseconds arms");
        let near = Instant::now() + Duration::from_micros(5_500);
        clock.wait_for(&poll, Some(near), true, &mut arms).unwrap();
        assert_eq!(arms, 2, "a near deadline is precise even when lenient");
    }

    #[test]
    fn one_arming_per_deadline() {
        let poll = Poll::new().unwrap();
        let mut clock = Clock::default();
        let mut arms = 0;
        let deadline = Instant::now() + Duration::from_micros(10_500);
        for _ in 0..3 {
            let wait = clock
                .wait_for(&poll, Some(deadline), false, &mut arms)
                .unwrap();
            assert!(wait > Duration::from_millis(10), "{wait:?}");
        }
        assert_eq!(arms, 1);
        let later = deadline + Duration::from_micros(300);
        clock.wait_for(&poll, Some(later), false, &mut arms);
        assert_eq!(arms, 2);
    }
}
