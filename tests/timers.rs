//! Timing below a millisecond: timers never fire early, `turn(timeout)` never returns
//! early, and neither waits for epoll's next whole millisecond.
//!
//! "Not early" is asserted strictly; lateness only loosely (a noisy two-core CI machine
//! can deschedule the test for milliseconds). The precision itself is measured by
//! `examples/timer_precision.rs`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sockloop::{Reactor, TimerId};

/// Lateness beyond which something is wrong even on a loaded machine.
const LOOSE: Duration = Duration::from_millis(50);

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Turns until `done` says so, with a bound on the turns so a bug cannot hang the test.
fn turn_until(reactor: &mut Reactor<Vec<Instant>>, fired: &mut Vec<Instant>, n: usize) {
    for _ in 0..10_000 {
        if fired.len() >= n {
            return;
        }
        reactor.turn(fired, Some(Duration::from_secs(1))).unwrap();
    }
    panic!("only {} of {n} timers fired", fired.len());
}

#[test]
fn a_timer_fires_not_early_and_not_much_late() {
    let mut reactor = Reactor::<Vec<Instant>>::new().unwrap();
    for after in [us(100), us(200), us(1000), us(1500), us(2750)] {
        let mut fired = Vec::new();
        let start = Instant::now();
        let id = reactor.set_timer(after, |_, fired, _| fired.push(Instant::now()));
        let deadline = reactor.timer_deadline(id).unwrap();
        assert!(deadline >= start + after);
        turn_until(&mut reactor, &mut fired, 1);
        assert!(fired[0] >= deadline, "{after:?}: fired early");
        assert!(fired[0] - start >= after, "{after:?}: fired early");
        assert!(
            fired[0] - start < after + LOOSE,
            "{after:?}: {:?}",
            fired[0] - start
        );
    }
}

#[test]
fn turn_with_a_short_timeout_returns_not_early() {
    let mut reactor = Reactor::<()>::new().unwrap();
    for timeout in [us(100), us(250), us(1000), us(1500)] {
        for _ in 0..20 {
            let start = Instant::now();
            assert_eq!(reactor.turn(&mut (), Some(timeout)).unwrap(), 0);
            let took = start.elapsed();
            assert!(took >= timeout, "{timeout:?}: returned after {took:?}");
            assert!(
                took < timeout + LOOSE,
                "{timeout:?}: returned after {took:?}"
            );
        }
    }
}

#[test]
fn a_stale_arming_does_not_end_a_turn_early() {
    // The clock is armed for a timer that is then cancelled; the next turn waits with
    // epoll's millisecond timeout (whole milliseconds, far enough), and the stale
    // arming wakes the poll before it: the turn must still wait for its own timeout.
    let fired = Rc::new(RefCell::new(false));
    let mut reactor = Reactor::<()>::new().unwrap();
    let f = fired.clone();
    let id = reactor.set_timer(us(1300), move |_, _, _| *f.borrow_mut() = true);
    // A posted job wakes the poll at once, after the clock was armed for the timer.
    reactor.remote().post(|_, _| {}).unwrap();
    reactor.turn(&mut (), None).unwrap();
    let armed = reactor.stats().timer_arms == 1;
    // Fails only if the machine stalled the test past the timer's deadline.
    let cancelled = reactor.cancel_timer(id).is_ok();
    let turns = reactor.stats().turns;
    let start = Instant::now();
    reactor
        .turn(&mut (), Some(Duration::from_millis(25)))
        .unwrap();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(25), "returned after {took:?}");
    assert!(
        took < Duration::from_millis(25) + LOOSE,
        "returned after {took:?}"
    );
    if armed && cancelled {
        assert!(!*fired.borrow(), "a cancelled timer fired");
        // Woken by the stale arming, the turn polled again.
        assert_eq!(reactor.stats().turns - turns, 2);
    }
}

#[test]
fn moving_the_earliest_deadline_later_and_earlier() {
    let mut reactor = Reactor::<Vec<Instant>>::new().unwrap();
    let start = Instant::now();
    let id = reactor.set_timer(us(400), |_, fired, _| fired.push(Instant::now()));
    // Arms the clock for 400 µs (a turn that ends before it).
    reactor.turn(&mut Vec::new(), Some(us(10))).unwrap();
    // Later: the old arming must not make it fire early.
    reactor.reset_timer(id, us(3300)).unwrap();
    let later = reactor.timer_deadline(id).unwrap();
    let mut fired = Vec::new();
    turn_until(&mut reactor, &mut fired, 1);
    assert!(fired[0] >= later, "fired before its new deadline");
    assert!(fired[0] - start >= us(3300));

    // Earlier: a timer far away is brought close; it must not wait for the old one.
    let start = Instant::now();
    let id = reactor.set_timer(Duration::from_secs(30), |_, fired, _| {
        fired.push(Instant::now())
    });
    reactor.turn(&mut Vec::new(), Some(us(10))).unwrap();
    reactor.reset_timer(id, us(700)).unwrap();
    let sooner = reactor.timer_deadline(id).unwrap();
    let mut fired = Vec::new();
    turn_until(&mut reactor, &mut fired, 1);
    assert!(fired[0] >= sooner);
    assert!(fired[0] - start < us(700) + LOOSE, "{:?}", fired[0] - start);
}

#[test]
fn cancelling_the_earliest_timer_leaves_the_next_one_on_time() {
    let mut reactor = Reactor::<Vec<(u32, Instant)>>::new().unwrap();
    // Both deadlines are timed by the timerfd (under 20 ms), and the first is far enough
    // that a loaded machine does not reach it during the short turn before the cancel.
    let first = reactor.set_timer(us(5_000), |_, fired, _| fired.push((1, Instant::now())));
    let second = reactor.set_timer(us(6_500), |_, fired, _| fired.push((2, Instant::now())));
    let second_at = reactor.timer_deadline(second).unwrap();
    let mut fired = Vec::new();
    reactor.turn(&mut fired, Some(us(10))).unwrap();
    reactor.cancel_timer(first).unwrap();
    // `run` returns when nothing is left: the cancelled timer must not end it early nor
    // fire, and the second must fire once, not early.
    reactor.run(&mut fired).unwrap();
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0, 2);
    assert!(fired[0].1 >= second_at);
}

#[test]
fn many_timers_fire_in_deadline_order_none_early() {
    let mut reactor = Reactor::<Vec<(usize, Instant)>>::new().unwrap();
    let mut deadlines = Vec::new();
    // Interleaved: set out of order, with sub-millisecond gaps.
    for i in 0..60usize {
        let after = us(((i * 37) % 60) as u64 * 90 + 50);
        let id: TimerId =
            reactor.set_timer(after, move |_, fired, _| fired.push((i, Instant::now())));
        deadlines.push((reactor.timer_deadline(id).unwrap(), i));
    }
    let mut fired = Vec::new();
    reactor.run(&mut fired).unwrap();
    assert_eq!(fired.len(), 60);
    deadlines.sort();
    let order: Vec<usize> = fired.iter().map(|&(i, _)| i).collect();
    let expected: Vec<usize> = deadlines.iter().map(|&(_, i)| i).collect();
    assert_eq!(order, expected);
    for (&(i, at), &(deadline, _)) in fired.iter().zip(&deadlines) {
        assert!(at >= deadline, "timer {i} fired early");
    }
}

#[test]
fn one_arming_per_change_of_the_earliest_deadline() {
    let fired = Rc::new(RefCell::new(0));
    let mut reactor = Reactor::<()>::new().unwrap();
    let f = fired.clone();
    reactor.set_timer(us(5300), move |_, _, _| *f.borrow_mut() += 1);
    // Many turns before it, each woken by a posted job: the deadline does not change,
    // nor does the arming.
    let remote = reactor.remote();
    let mut turns = 0;
    while *fired.borrow() == 0 {
        remote.post(|_, _| {}).unwrap();
        reactor.turn(&mut (), None).unwrap();
        turns += 1;
    }
    assert!(turns > 1);
    let arms = reactor.stats().timer_arms;
    assert!(
        arms <= 1,
        "armed {arms} times for one deadline over {turns} turns"
    );
}

#[test]
fn far_whole_millisecond_waits_arm_nothing() {
    let mut reactor = Reactor::<()>::new().unwrap();
    for _ in 0..5 {
        reactor
            .turn(&mut (), Some(Duration::from_millis(25)))
            .unwrap();
    }
    reactor.turn(&mut (), Some(Duration::ZERO)).unwrap();
    // Zero, unless the machine stalled the test between the start of a turn and its
    // poll by more than the rounding tolerance (then the timerfd times it instead).
    assert!(reactor.stats().timer_arms <= 1);
}

/// The reactor's own timers (here a socket's read timeout) need no timerfd arming when
/// they are the nearest deadline and far: they may end up to a millisecond late. A
/// timer of the application keeps the waits precise.
#[test]
fn the_reactor_s_own_far_timers_arm_nothing_the_application_s_do() {
    use sockloop::{StreamEvent, StreamSocket, StreamSocketControl};
    for with_user_timer in [false, true] {
        let mut reactor = Reactor::<Vec<Instant>>::new().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let control = StreamSocketControl::new().read_timeout(Some(us(300_500)));
        let started = Instant::now();
        StreamSocket::connect_with(
            &mut reactor,
            addr.ip(),
            addr.port(),
            &control,
            |_, closed: &mut Vec<Instant>, _, event| {
                if let StreamEvent::Closed(_) = event {
                    closed.push(Instant::now());
                }
            },
        )
        .unwrap();
        let (_peer, _) = listener.accept().unwrap();
        if with_user_timer {
            reactor.set_timer(us(250_500), |_, _, _| {});
        }
        let mut closed = Vec::new();
        for _ in 0..1_000 {
            if !closed.is_empty() {
                break;
            }
            reactor
                .turn(&mut closed, Some(Duration::from_secs(5)))
                .unwrap();
        }
        assert_eq!(closed.len(), 1, "the read timeout closed the socket");
        assert!(closed[0] - started >= us(300_500), "never early");
        let arms = reactor.stats().timer_arms;
        if with_user_timer {
            assert!(
                arms >= 1,
                "the application's timer between milliseconds is armed"
            );
        } else {
            // One wait, begun 300 ms before the deadline: epoll's timeout.
            assert_eq!(arms, 0, "armings for the reactor's own timer");
        }
    }
}
