//! Reactor internals that the public API cannot reach.

use std::time::Duration;

use super::{Key, Owner, Reactor, SourceTimer, TimerId};

#[test]
fn a_timer_id_cannot_reach_an_internal_timer() {
    let mut r = Reactor::<()>::new().unwrap();
    let owner = Key { index: 0, gen: 0 };
    let internal = r.set_source_timer(Duration::from_secs(60), owner, SourceTimer::Linger);
    // A forged (or stale, aliased) id naming the internal timer's slot and version.
    let forged = TimerId(internal);
    assert!(r.timer_deadline(forged).is_none());
    assert!(r.reset_timer(forged, Duration::ZERO).is_err());
    assert!(r.cancel_timer(forged).is_err());
    assert!(
        r.timers.contains(internal, Owner::Reactor),
        "the internal timer survived"
    );
    assert_eq!(r.live, 0);
}
