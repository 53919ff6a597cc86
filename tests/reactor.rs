//! The reactor: timers, `Remote`, foreign fds, `turn`/`run` contracts.

mod util;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use sockloop::{Interest, Reactor, SocketErrorStatus, TimerId};
use util::harness::thread_cpu_time;
use util::{run_bounded, run_until};

const LIMIT: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------- timers

#[test]
fn equal_deadlines_fire_in_insertion_order() {
    let mut r = Reactor::<Vec<u32>>::new().unwrap();
    let at = Instant::now() + 20 * MS;
    for i in 0..50 {
        r.set_timer_at(at, move |_, fired, _| fired.push(i));
    }
    // An earlier deadline set later still fires first.
    r.set_timer_at(at - 10 * MS, |_, fired, _| fired.push(1000));
    let mut fired = Vec::new();
    run_bounded(&mut r, &mut fired, LIMIT);
    let mut want = vec![1000];
    want.extend(0..50);
    assert_eq!(fired, want);
}

#[test]
fn run_returns_when_the_last_timer_fired() {
    let mut r = Reactor::<Vec<u32>>::new().unwrap();
    let start = Instant::now();
    r.set_timer(30 * MS, |_, f, _| f.push(2));
    r.set_timer(10 * MS, |_, f, _| f.push(1));
    r.set_timer(60 * MS, |_, f, _| f.push(3));
    let mut fired = Vec::new();
    run_bounded(&mut r, &mut fired, LIMIT);
    assert_eq!(fired, [1, 2, 3]);
    assert!(
        start.elapsed() >= 60 * MS,
        "returned early: {:?}",
        start.elapsed()
    );
    // Nothing left: run returns at once.
    let t = Instant::now();
    run_bounded(&mut r, &mut fired, LIMIT);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn cancel_and_stale_ids() {
    let mut r = Reactor::<Vec<u32>>::new().unwrap();
    let a = r.set_timer(10 * MS, |_, f, _| f.push(1));
    let b = r.set_timer(20 * MS, |_, f, _| f.push(2));
    assert!(r.timer_deadline(a).is_some());
    r.cancel_timer(a).unwrap();
    assert_eq!(r.timer_deadline(a), None);
    let e = r.cancel_timer(a).unwrap_err();
    assert_eq!(e.status(), SocketErrorStatus::InvalidHandle);
    let e = r.reset_timer(a, MS).unwrap_err();
    assert_eq!(e.status(), SocketErrorStatus::InvalidHandle);
    let mut fired = Vec::new();
    run_bounded(&mut r, &mut fired, LIMIT);
    assert_eq!(fired, [2]);
    // `b` fired: its id is stale now, and a new timer in its slot is not reachable
    // through it.
    let c = r.set_timer(Duration::from_secs(60), |_, f, _| f.push(3));
    assert_ne!(b, c);
    for e in [r.cancel_timer(b), r.reset_timer(b, MS)] {
        assert_eq!(e.unwrap_err().status(), SocketErrorStatus::InvalidHandle);
    }
    assert_eq!(r.timer_deadline(b), None);
    assert!(r.timer_deadline(c).is_some());
    r.cancel_timer(c).unwrap();
    // Only cancelled timers left: run returns at once.
    let t = Instant::now();
    run_bounded(&mut r, &mut fired, LIMIT);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(fired, [2]);
}

#[test]
fn reset_earlier_and_later() {
    #[derive(Default)]
    struct S {
        early: Option<Duration>,
        late: Option<Duration>,
    }
    let mut r = Reactor::<S>::new().unwrap();
    let start = Instant::now();
    let early = r.set_timer(Duration::from_secs(5), move |_, s: &mut S, _| {
        s.early = Some(start.elapsed())
    });
    let late = r.set_timer(20 * MS, move |_, s: &mut S, _| {
        s.late = Some(start.elapsed())
    });
    r.reset_timer(early, 20 * MS).unwrap();
    r.reset_timer(late, 150 * MS).unwrap();
    assert!(r.timer_deadline(late).unwrap() >= start + 150 * MS);
    let mut s = S::default();
    run_bounded(&mut r, &mut s, LIMIT);
    let early = s.early.expect("early timer fired");
    let late = s.late.expect("late timer fired");
    assert!(
        early >= 20 * MS && early < Duration::from_secs(5),
        "{early:?}"
    );
    assert!(
        late >= 150 * MS,
        "the later deadline was not kept: {late:?}"
    );
    assert!(early < late);
}

#[test]
fn periodic_timer_rearms_itself() {
    #[derive(Default)]
    struct S {
        times: Vec<Instant>,
        id: Option<TimerId>,
    }
    let mut r = Reactor::<S>::new().unwrap();
    let id = r.set_timer(5 * MS, |r, s: &mut S, id| {
        s.times.push(Instant::now());
        assert_eq!(Some(id), s.id, "the callback gets its own id");
        assert_eq!(r.timer_deadline(id), None, "not pending while it runs");
        if s.times.len() < 10 {
            r.reset_timer(id, 5 * MS).unwrap();
            assert!(r.timer_deadline(id).is_some());
        }
    });
    let mut s = S {
        id: Some(id),
        ..S::default()
    };
    run_bounded(&mut r, &mut s, LIMIT);
    assert_eq!(s.times.len(), 10);
    for w in s.times.windows(2) {
        assert!(w[1] - w[0] >= 5 * MS, "fired too soon: {:?}", w[1] - w[0]);
    }
    // Not re-armed the last time: stale.
    let e = r.reset_timer(id, MS).unwrap_err();
    assert_eq!(e.status(), SocketErrorStatus::InvalidHandle);
}

#[test]
fn rearm_with_zero_delay_does_not_spin_within_a_turn() {
    let mut r = Reactor::<u32>::new().unwrap();
    r.set_timer(MS, |r, n, id| {
        *n += 1;
        if *n < 5 {
            r.reset_timer(id, Duration::ZERO).unwrap();
        }
    });
    let mut n = 0;
    run_bounded(&mut r, &mut n, LIMIT);
    assert_eq!(n, 5);
}

#[test]
fn timer_set_in_a_callback_is_measured_from_a_fresh_now() {
    #[derive(Default)]
    struct S {
        set_at: Option<Instant>,
        deadline: Option<Instant>,
        fired_at: Option<Instant>,
    }
    let mut r = Reactor::<S>::new().unwrap();
    r.set_timer(5 * MS, |r, s: &mut S, _| {
        // A slow handler: the turn's idea of "now" is 40 ms old when it returns.
        thread::sleep(40 * MS);
        let set_at = Instant::now();
        let id = r.set_timer(30 * MS, |_, s: &mut S, _| s.fired_at = Some(Instant::now()));
        s.set_at = Some(set_at);
        s.deadline = r.timer_deadline(id);
    });
    let mut s = S::default();
    run_bounded(&mut r, &mut s, LIMIT);
    let set_at = s.set_at.unwrap();
    assert!(s.deadline.unwrap() >= set_at + 30 * MS);
    let waited = s.fired_at.unwrap() - set_at;
    assert!(waited >= 30 * MS, "fired {waited:?} after being set");
}

#[test]
fn cancel_from_inside_its_own_callback() {
    let mut r = Reactor::<Vec<&'static str>>::new().unwrap();
    r.set_timer(5 * MS, |r, log, id| {
        log.push("fired");
        // Re-arm, then change our mind.
        r.reset_timer(id, 5 * MS).unwrap();
        r.cancel_timer(id).unwrap();
        assert_eq!(
            r.cancel_timer(id).unwrap_err().status(),
            SocketErrorStatus::InvalidHandle
        );
        assert_eq!(r.timer_deadline(id), None);
    });
    r.set_timer(5 * MS, |r, log, id| {
        log.push("plain cancel");
        r.cancel_timer(id).unwrap();
    });
    let mut log = Vec::new();
    run_bounded(&mut r, &mut log, LIMIT);
    assert_eq!(log, ["fired", "plain cancel"]);
}

#[test]
fn a_callback_cancels_another_expired_timer() {
    #[derive(Default)]
    struct S {
        victim: Option<TimerId>,
        log: Vec<u32>,
    }
    let mut r = Reactor::<S>::new().unwrap();
    let at = Instant::now() + 5 * MS;
    r.set_timer_at(at, |r, s: &mut S, _| {
        s.log.push(1);
        r.cancel_timer(s.victim.unwrap()).unwrap();
    });
    let victim = r.set_timer_at(at, |_, s: &mut S, _| s.log.push(2));
    let mut s = S {
        victim: Some(victim),
        ..S::default()
    };
    run_bounded(&mut r, &mut s, LIMIT);
    assert_eq!(s.log, [1]);
}

#[test]
fn turn_with_nothing_registered_waits_at_most_what_was_asked() {
    let mut r = Reactor::<()>::new().unwrap();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(r.turn(&mut (), Some(10 * MS)).unwrap(), 0);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(1), "turn took {took:?}");
    }
    let t = Instant::now();
    r.turn(&mut (), Some(Duration::ZERO)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    // A timer far away does not stretch the wait either.
    r.set_timer(Duration::from_secs(60), |_, _, _| {});
    let t = Instant::now();
    r.turn(&mut (), Some(10 * MS)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert!(r.timeout().unwrap() > Duration::from_secs(50));
}

#[test]
fn many_timers_with_frequent_resets() {
    const N: usize = 100_000;
    struct S {
        due: Vec<Instant>,
        fired: Vec<u8>,
        early: usize,
        count: usize,
    }
    let mut r = Reactor::<S>::new().unwrap();
    let (start, cpu_start) = (Instant::now(), thread_cpu_time());
    let base = start + 50 * MS;
    let mut s = S {
        due: vec![base; N],
        fired: vec![0; N],
        early: 0,
        count: 0,
    };
    let ids: Vec<TimerId> = (0..N)
        .map(|i| {
            r.set_timer_at(base + Duration::from_secs(10), move |r, s: &mut S, id| {
                s.count += 1;
                s.fired[i] += 1;
                if Instant::now() < s.due[i] {
                    s.early += 1;
                }
                // Every tenth timer fires a second time, a little later.
                if i % 10 == 0 && s.fired[i] == 1 {
                    s.due[i] = Instant::now() + MS;
                    r.reset_timer(id, MS).unwrap();
                }
            })
        })
        .collect();
    // Five rounds of resets over all timers, the last one to 0..=49 ms past `base`.
    for round in 0..5u64 {
        for (i, id) in ids.iter().enumerate() {
            let due = base + Duration::from_millis((i as u64 * 7 + round * 13) % 50);
            let after = due.saturating_duration_since(Instant::now());
            s.due[i] = Instant::now() + after;
            r.reset_timer(*id, after).unwrap();
        }
    }
    run_bounded(&mut r, &mut s, LIMIT);
    let (took, cpu) = (start.elapsed(), thread_cpu_time() - cpu_start);
    assert_eq!(s.count, N + N / 10);
    assert!(s
        .fired
        .iter()
        .enumerate()
        .all(|(i, &n)| n == 1 + u8::from(i % 10 == 0)));
    assert_eq!(s.early, 0, "timers fired before their deadline");
    // About 0.6 s of CPU in debug; the wall-time bound only catches a hang.
    assert!(
        cpu < Duration::from_secs(2),
        "took {cpu:?} of CPU ({took:?} wall)"
    );
    assert!(took < LIMIT, "took {took:?}");
}

// ---------------------------------------------------------------- turn and run

#[test]
fn turn_inside_a_handler_is_an_error() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut r = Reactor::<Vec<SocketErrorStatus>>::new().unwrap();
    r.set_timer(MS, |r, errs, _| {
        let e = r.turn(errs, Some(Duration::ZERO)).unwrap_err();
        errs.push(e.status());
        let e = r.run(errs).unwrap_err();
        errs.push(e.status());
    });
    r.register_fd(b, Interest::Readable, |r, errs, src, _, _| {
        let e = r.turn(errs, None).unwrap_err();
        errs.push(e.status());
        r.deregister_fd(src).unwrap();
    })
    .unwrap();
    r.remote()
        .post(|r, errs| {
            let e = r.turn(errs, None).unwrap_err();
            errs.push(e.status());
        })
        .unwrap();
    (&a).write_all(b"x").unwrap();
    let mut errs = Vec::new();
    run_bounded(&mut r, &mut errs, LIMIT);
    assert_eq!(errs.len(), 4, "{errs:?}");
    assert!(errs.iter().all(|s| *s == SocketErrorStatus::InvalidState));
    // The reactor still works afterwards.
    r.set_timer(MS, |_, errs, _| errs.clear());
    run_bounded(&mut r, &mut errs, LIMIT);
    assert!(errs.is_empty());
}

#[test]
fn stop_inside_a_handler_ends_run() {
    let mut r = Reactor::<u32>::new().unwrap();
    let keep = r.set_timer(Duration::from_secs(60), |_, _, _| {});
    r.set_timer(5 * MS, |r, n, _| {
        *n += 1;
        r.stop();
    });
    let mut n = 0;
    run_bounded(&mut r, &mut n, LIMIT);
    assert_eq!(n, 1);
    // A second run is not stopped by the first stop.
    r.set_timer(5 * MS, |r, n, _| {
        *n += 1;
        r.stop();
    });
    run_bounded(&mut r, &mut n, LIMIT);
    assert_eq!(n, 2);
    r.cancel_timer(keep).unwrap();
}

// ---------------------------------------------------------------- Remote

#[test]
fn post_from_several_threads_keeps_order_per_thread() {
    const THREADS: usize = 4;
    const JOBS: usize = 2_000;
    let mut r = Reactor::<Vec<(usize, usize)>>::new().unwrap();
    let watchdog = r.set_timer(LIMIT, |_, _, _| panic!("posts did not arrive in time"));
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let remote = r.remote();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                for j in 0..JOBS {
                    remote.post(move |_, log| log.push((t, j))).unwrap();
                }
            })
        })
        .collect();
    let remote = r.remote();
    let joiner = thread::spawn(move || {
        for w in workers {
            w.join().unwrap();
        }
        // Posted last: when it runs, everything before it has run.
        remote
            .post(move |r, _| {
                r.cancel_timer(watchdog).unwrap();
                r.stop();
            })
            .unwrap();
    });
    let mut log = Vec::new();
    run_bounded(&mut r, &mut log, LIMIT + LIMIT);
    joiner.join().unwrap();
    assert_eq!(log.len(), THREADS * JOBS);
    for t in 0..THREADS {
        let seq: Vec<usize> = log.iter().filter(|e| e.0 == t).map(|e| e.1).collect();
        assert_eq!(
            seq,
            (0..JOBS).collect::<Vec<_>>(),
            "thread {t} out of order"
        );
    }
}

#[test]
fn remote_stop_from_another_thread() {
    let mut r = Reactor::<u32>::new().unwrap();
    let keep = r.set_timer(Duration::from_secs(60), |_, _, _| {});
    let remote = r.remote();
    let stopper = thread::spawn(move || {
        thread::sleep(50 * MS);
        remote.stop().unwrap();
    });
    let t = Instant::now();
    run_bounded(&mut r, &mut 0, LIMIT);
    assert!(t.elapsed() >= 40 * MS);
    stopper.join().unwrap();
    // The stop was consumed: the next run goes on until its own work is done.
    r.set_timer(20 * MS, |_, n, _| *n += 1);
    r.cancel_timer(keep).unwrap();
    let mut n = 0;
    run_bounded(&mut r, &mut n, LIMIT);
    assert_eq!(n, 1);
}

#[test]
fn post_wakes_a_sleeping_turn() {
    let mut r = Reactor::<u32>::new().unwrap();
    let remote = r.remote();
    let poster = thread::spawn(move || {
        thread::sleep(30 * MS);
        remote.post(|_, n| *n += 1).unwrap();
    });
    let mut n = 0;
    let t = Instant::now();
    while n == 0 {
        assert!(t.elapsed() < LIMIT);
        r.turn(&mut n, Some(LIMIT)).unwrap();
    }
    assert!(t.elapsed() < LIMIT / 2, "turn was not woken by the post");
    poster.join().unwrap();
}

#[test]
fn post_after_the_reactor_is_dropped_fails() {
    let r = Reactor::<u32>::new().unwrap();
    let remote = r.remote();
    let clone = remote.clone();
    drop(r);
    let e = remote.post(|_, n| *n += 1).unwrap_err();
    assert_eq!(e.status(), SocketErrorStatus::InvalidHandle);
    let e = thread::spawn(move || clone.post(|_, _| {}))
        .join()
        .unwrap()
        .unwrap_err();
    assert_eq!(e.status(), SocketErrorStatus::InvalidHandle);
}

#[test]
fn posted_job_can_use_the_reactor() {
    let mut r = Reactor::<Vec<u32>>::new().unwrap();
    let remote = r.remote();
    thread::spawn(move || {
        remote
            .post(|r, log| {
                log.push(1);
                r.set_timer(5 * MS, |_, log, _| log.push(2));
            })
            .unwrap();
    })
    .join()
    .unwrap();
    let mut log = Vec::new();
    run_until(&mut r, &mut log, LIMIT, |log| log.len() == 2);
    assert_eq!(log, [1, 2]);
}

// ---------------------------------------------------------------- foreign fds

#[derive(Default)]
struct FdLog {
    calls: usize,
    bytes: Vec<u8>,
    closed: bool,
}

fn drain(mut from: &UnixStream, into: &mut FdLog) -> bool {
    let mut buf = [0; 256];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn foreign_fd_readiness_and_deregister() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = std::rc::Rc::new(b);
    let mut r = Reactor::<FdLog>::new().unwrap();
    // A shared owner: the reactor's clone goes at deregistration, `b` stays open.
    let src = r
        .register_fd(
            b.clone(),
            Interest::Readable,
            move |_, log, _, reader, ev| {
                assert!(ev.readable || ev.closed, "{ev:?}");
                log.calls += 1;
                drain(reader, log);
            },
        )
        .unwrap();
    let mut log = FdLog::default();
    // Nothing to read: no call.
    r.turn(&mut log, Some(20 * MS)).unwrap();
    assert_eq!(log.calls, 0);
    (&a).write_all(b"hello").unwrap();
    run_until(&mut r, &mut log, LIMIT, |l| l.bytes == b"hello");
    (&a).write_all(b" world").unwrap();
    run_until(&mut r, &mut log, LIMIT, |l| l.bytes == b"hello world");
    let calls = log.calls;

    r.deregister_fd(src).unwrap();
    let e = r.deregister_fd(src).unwrap_err();
    assert_eq!(e.status(), SocketErrorStatus::InvalidHandle);
    (&a).write_all(b"unseen").unwrap();
    r.turn(&mut log, Some(30 * MS)).unwrap();
    assert_eq!(log.calls, calls, "handler called after deregister");
    // Nothing registered any more: run returns at once.
    run_bounded(&mut r, &mut log, LIMIT);
    // The fd is still open and usable.
    let mut buf = [0; 6];
    b.set_nonblocking(false).unwrap();
    (&*b).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"unseen");
}

#[test]
fn foreign_fd_sees_the_peer_close_and_deregisters_itself() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut r = Reactor::<FdLog>::new().unwrap();
    r.register_fd(b, Interest::Readable, move |r, log, src, b, ev| {
        log.calls += 1;
        if drain(b, log) {
            assert!(ev.closed || ev.readable, "{ev:?}");
            log.closed = true;
            r.deregister_fd(src).unwrap();
        }
    })
    .unwrap();
    (&a).write_all(b"bye").unwrap();
    drop(a);
    let mut log = FdLog::default();
    run_bounded(&mut r, &mut log, LIMIT);
    assert!(log.closed);
    assert_eq!(log.bytes, b"bye");
}

#[test]
fn foreign_fd_writable() {
    let (a, _b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let mut r = Reactor::<FdLog>::new().unwrap();
    r.register_fd(a, Interest::Writable, |r, log, src, _, ev| {
        assert!(ev.writable, "{ev:?}");
        log.calls += 1;
        r.deregister_fd(src).unwrap();
    })
    .unwrap();
    let mut log = FdLog::default();
    run_bounded(&mut r, &mut log, LIMIT);
    assert_eq!(log.calls, 1);
}

#[test]
fn register_fd_refuses_a_regular_file() {
    let file = std::fs::File::open(std::env::current_exe().unwrap()).unwrap();
    let mut r = Reactor::<()>::new().unwrap();
    assert!(r
        .register_fd(file, Interest::Readable, |_, _, _, _, _| {})
        .is_err());
    // Nothing was left registered.
    let t = Instant::now();
    run_bounded(&mut r, &mut (), LIMIT);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn embedding_poll_the_reactor_fd_then_turn() {
    use mio::unix::SourceFd;
    use mio::{Events, Poll, Token};

    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut r = Reactor::<FdLog>::new().unwrap();
    r.register_fd(b, Interest::Readable, move |_, log, _, b, _| {
        log.calls += 1;
        drain(b, log);
    })
    .unwrap();

    // The host loop: its own poller, watching the reactor's epoll descriptor.
    let mut outer = Poll::new().unwrap();
    let reactor_fd = r.as_raw_fd();
    outer
        .registry()
        .register(
            &mut SourceFd(&reactor_fd),
            Token(7),
            mio::Interest::READABLE,
        )
        .unwrap();
    let mut events = Events::with_capacity(8);
    let mut log = FdLog::default();

    // Nothing pending: the reactor fd is not readable, the timeout is `None`.
    outer.poll(&mut events, Some(20 * MS)).unwrap();
    assert!(events.is_empty());
    assert_eq!(r.timeout(), None);

    for round in 1..=3 {
        (&a).write_all(b"tick").unwrap();
        outer.poll(&mut events, Some(LIMIT)).unwrap();
        assert!(
            events
                .iter()
                .any(|e| e.token() == Token(7) && e.is_readable()),
            "the reactor fd did not become readable"
        );
        let n = r.turn(&mut log, Some(Duration::ZERO)).unwrap();
        assert!(n >= 1);
        assert_eq!(log.calls, round);
        assert_eq!(log.bytes.len(), 4 * round);
    }

    // A timer: the host learns how long it may sleep.
    r.set_timer(20 * MS, |_, log, _| log.closed = true);
    let wait = r.timeout().unwrap();
    assert!(wait <= 20 * MS);
    let deadline = Instant::now() + LIMIT;
    while !log.closed {
        assert!(Instant::now() < deadline);
        outer.poll(&mut events, r.timeout()).unwrap();
        r.turn(&mut log, Some(Duration::ZERO)).unwrap();
    }
    // Posts wake the host loop too.
    r.remote().post(|_, log| log.calls += 100).unwrap();
    outer.poll(&mut events, Some(LIMIT)).unwrap();
    assert!(
        !events.is_empty(),
        "a post did not make the reactor fd readable"
    );
    r.turn(&mut log, Some(Duration::ZERO)).unwrap();
    assert_eq!(log.calls, 103);
    let _ = AsRawFd::as_raw_fd(&r);
    let _ = std::os::fd::AsFd::as_fd(&r);
}

#[test]
fn huge_durations_do_not_panic() {
    let mut r = Reactor::<u32>::new().unwrap();
    let id = r.set_timer(Duration::MAX, |_, n, _| *n += 1);
    assert!(r.timer_deadline(id).unwrap() > Instant::now() + Duration::from_secs(3600));
    r.reset_timer(id, Duration::MAX).unwrap();
    let mut n = 0;
    r.turn(&mut n, Some(Duration::ZERO)).unwrap();
    assert!(r.timeout().unwrap() > Duration::from_secs(3600));
    r.cancel_timer(id).unwrap();
    // A post wakes a turn asked to wait "forever".
    r.remote().post(|_, n| *n += 10).unwrap();
    let t = Instant::now();
    r.turn(&mut n, Some(Duration::MAX)).unwrap();
    assert!(t.elapsed() < LIMIT);
    assert_eq!(n, 10);
}

#[test]
fn a_job_that_reposts_itself_does_not_starve_the_loop() {
    use sockloop::Remote;
    struct S {
        jobs: u64,
        turns_seen: Vec<u64>,
        timer_fired: bool,
        started: Instant,
    }
    fn again(remote: Remote<S>) {
        let next = remote.clone();
        remote
            .post(move |r, s| {
                s.jobs += 1;
                s.turns_seen.push(r.stats().turns);
                // Bounded either way: give up after five seconds.
                if !s.timer_fired && s.started.elapsed() < Duration::from_secs(5) {
                    again(next);
                }
            })
            .unwrap();
    }
    let mut r = Reactor::<S>::new().unwrap();
    r.set_timer(20 * MS, |_, s, _| s.timer_fired = true);
    again(r.remote());
    let mut s = S {
        jobs: 0,
        turns_seen: Vec::new(),
        timer_fired: false,
        started: Instant::now(),
    };
    run_until(&mut r, &mut s, LIMIT, |s| s.timer_fired);
    assert!(
        s.started.elapsed() < Duration::from_secs(3),
        "the timer waited for the reposting job: {:?}",
        s.started.elapsed()
    );
    // A job posted by a job runs at a later turn.
    for w in s.turns_seen.windows(2) {
        assert!(w[1] > w[0], "two generations of jobs in one turn: {w:?}");
    }
    // Drain what is still in flight.
    run_until(&mut r, &mut s, LIMIT, |s| {
        s.turns_seen.len() as u64 == s.jobs
    });
}

#[test]
fn registering_an_fd_twice_fails_and_keeps_the_first() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = std::rc::Rc::new(b);
    let mut r = Reactor::<FdLog>::new().unwrap();
    let first = r
        .register_fd(
            b.clone(),
            Interest::Readable,
            move |r, log, src, reader, _| {
                log.calls += 1;
                drain(reader, log);
                r.deregister_fd(src).unwrap();
            },
        )
        .unwrap();
    assert!(r
        .register_fd(b.clone(), Interest::Readable, |_, _, _, _, _| {
            panic!("the second registration got an event")
        })
        .is_err());
    (&a).write_all(b"one").unwrap();
    let mut log = FdLog::default();
    run_bounded(&mut r, &mut log, LIMIT);
    assert_eq!(log.calls, 1);
    assert_eq!(log.bytes, b"one");
    assert!(r.deregister_fd(first).is_err());
}

#[test]
fn an_event_for_an_fd_deregistered_earlier_in_the_batch_is_dropped() {
    // Two readable fds in one poll batch: whichever handler runs first deregisters
    // the other and registers a quiet fd, which may take the freed slot. The queued
    // event of the removed fd must reach neither its old handler nor the newcomer.
    #[derive(Default)]
    struct S {
        sources: Vec<sockloop::FdSource>,
        calls: Vec<usize>,
        newcomer: Option<sockloop::FdSource>,
    }
    let (writers, mut readers): (Vec<UnixStream>, Vec<UnixStream>) =
        (0..3).map(|_| UnixStream::pair().unwrap()).unzip();
    for b in &readers {
        b.set_nonblocking(true).unwrap();
    }
    let quiet = std::rc::Rc::new(readers.pop().unwrap());
    let mut r = Reactor::<S>::new().unwrap();
    let mut s = S::default();
    for (i, b) in readers.into_iter().enumerate() {
        let quiet = quiet.clone();
        let src = r
            .register_fd(b, Interest::Readable, move |r, s: &mut S, me, _, _| {
                s.calls.push(i);
                if s.newcomer.is_none() {
                    let other = *s.sources.iter().find(|&&x| x != me).unwrap();
                    r.deregister_fd(other).unwrap();
                    let new = r
                        .register_fd(
                            quiet.clone(),
                            Interest::Readable,
                            |_, s: &mut S, _, _, _| s.calls.push(99),
                        )
                        .unwrap();
                    s.newcomer = Some(new);
                }
            })
            .unwrap();
        s.sources.push(src);
    }
    for a in writers.iter().take(2) {
        (&*a).write_all(b"x").unwrap();
    }
    let before = r.stats();
    let n = r.turn(&mut s, Some(LIMIT)).unwrap();
    assert_eq!(n, 2, "both events in one batch");
    assert_eq!(s.calls.len(), 1, "{:?}", s.calls);
    assert_eq!(r.stats().stale_events - before.stale_events, 1);
    // The newcomer works normally.
    (&writers[2]).write_all(b"y").unwrap();
    run_until(&mut r, &mut s, LIMIT, |s| s.calls.len() == 2);
    assert_eq!(s.calls[1], 99);
}

#[test]
fn a_deadline_in_the_past_fires_on_the_next_turn() {
    let mut r = Reactor::<u32>::new().unwrap();
    r.set_timer_at(Instant::now() - Duration::from_millis(5), |_, n, _| *n += 1);
    assert_eq!(r.timeout(), Some(Duration::ZERO));
    let mut n = 0;
    let t = Instant::now();
    r.turn(&mut n, Some(LIMIT)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(n, 1);
}

#[test]
fn a_registered_fd_is_owned_and_closed_through_its_own_value() {
    // The reactor owns what it watches: deregistering closes it, so its number can
    // only be reused once the reactor is done with it. Here a handler deregisters its
    // own fd and a listener is bound at once (it may get that number): the reactor
    // still deregisters the old fd through the value it holds, and the listener keeps
    // its events.
    use sockloop::{ListenerEvent, StreamSocketListener};
    #[derive(Default)]
    struct S {
        addr: Option<std::net::SocketAddr>,
        accepted: u32,
    }
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let mut r = Reactor::<S>::new().unwrap();
    r.register_fd(b, Interest::Readable, |r, s, src, b, _| {
        let mut got = [0; 8];
        assert_eq!(b.read(&mut got).unwrap(), 2);
        r.deregister_fd(src).unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.addr = Some(std_listener.local_addr().unwrap());
        StreamSocketListener::from_std(r, std_listener, |_, s: &mut S, _, ev| {
            if let ListenerEvent::ConnectionReceived(_) = ev {
                s.accepted += 1;
            }
        })
        .unwrap();
    })
    .unwrap();
    (&a).write_all(b"go").unwrap();
    let mut s = S::default();
    run_until(&mut r, &mut s, LIMIT, |s| s.addr.is_some());
    // The reactor dropped `b`: its peer sees end of file.
    let mut rest = Vec::new();
    a.set_read_timeout(Some(LIMIT)).unwrap();
    (&a).read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let _client = std::net::TcpStream::connect(s.addr.unwrap()).unwrap();
    run_until(&mut r, &mut s, LIMIT, |s| s.accepted == 1);
}
