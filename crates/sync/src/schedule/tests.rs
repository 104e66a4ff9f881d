use chrono::TimeZone;

use super::*;

fn paris() -> Zone {
    Zone::parse(Some("Europe/Paris")).unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

/// Steps a scheduler minute by minute from `from` to `to` and returns when `source`
/// was due, as a clock checking every minute would see it.
fn fires(expr: &str, zone: Zone, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let schedules = BTreeMap::from([("s".to_owned(), Schedule::new(expr, zone, 0).unwrap())]);
    let last = BTreeMap::from([("s".to_owned(), from)]);
    let mut sched = Scheduler::new(schedules, &last, Missed::Skip, from);
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        if !sched.due(t).is_empty() {
            out.push(t);
        }
        t += TimeDelta::minutes(1);
    }
    out
}

#[test]
fn a_nightly_schedule_fires_once_a_day_at_local_time() {
    // 02:00 in Paris is 00:00 UTC in summer.
    let got = fires(
        "0 2 * * *",
        paris(),
        utc(2026, 6, 1, 0, 1),
        utc(2026, 6, 4, 0, 1),
    );
    assert_eq!(
        got,
        vec![
            utc(2026, 6, 2, 0, 0),
            utc(2026, 6, 3, 0, 0),
            utc(2026, 6, 4, 0, 0)
        ]
    );
    let every_15 = fires(
        "*/15 8-9 * * 1-5",
        paris(),
        utc(2026, 6, 5, 0, 0),
        utc(2026, 6, 8, 0, 0),
    );
    // Friday 5 June: 08:00..09:45 local, 8 fires; the weekend has none.
    assert_eq!(every_15.len(), 8);
    assert_eq!(every_15[0], utc(2026, 6, 5, 6, 0));
    assert_eq!(every_15[7], utc(2026, 6, 5, 7, 45));
}

#[test]
fn a_fire_in_the_skipped_hour_runs_right_after_the_spring_change() {
    // Paris skips 02:00-03:00 local on 29 March 2026 (01:00 UTC).
    let got = fires(
        "30 2 * * *",
        paris(),
        utc(2026, 3, 28, 0, 0),
        utc(2026, 3, 31, 0, 0),
    );
    assert_eq!(
        got,
        vec![
            utc(2026, 3, 28, 1, 30), // 02:30 CET
            utc(2026, 3, 29, 1, 0),  // 03:00 CEST, the first minute after the gap
            utc(2026, 3, 30, 0, 30), // 02:30 CEST
        ]
    );
    // The local day runs from 00:00 CET (23:00 UTC the day before) to 24:00 CEST.
    let hourly = fires(
        "0 * * * *",
        paris(),
        utc(2026, 3, 28, 22, 59),
        utc(2026, 3, 29, 22, 0),
    );
    assert_eq!(hourly.len(), 23, "the local day of the change has 23 hours");
}

#[test]
fn a_fire_in_the_repeated_hour_runs_once_at_the_autumn_change() {
    // Paris goes through 02:00-03:00 local twice on 25 October 2026.
    let got = fires(
        "30 2 * * *",
        paris(),
        utc(2026, 10, 24, 0, 0),
        utc(2026, 10, 27, 0, 0),
    );
    assert_eq!(
        got,
        vec![
            utc(2026, 10, 24, 0, 30), // 02:30 CEST
            utc(2026, 10, 25, 0, 30), // 02:30 CEST, the first pass only
            utc(2026, 10, 26, 1, 30), // 02:30 CET
        ]
    );
    // The local day runs from 00:00 CEST (22:00 UTC the day before) to 24:00 CET.
    let hourly = fires(
        "0 * * * *",
        paris(),
        utc(2026, 10, 24, 21, 59),
        utc(2026, 10, 25, 23, 0),
    );
    assert_eq!(hourly.len(), 25, "the local day of the change has 25 hours");
}

#[test]
fn missed_fires_run_once_at_start_up_or_wait_by_policy() {
    let schedule = || {
        BTreeMap::from([(
            "xnat".to_owned(),
            Schedule::new("0 2 * * *", paris(), 0).unwrap(),
        )])
    };
    let now = utc(2026, 6, 10, 12, 0);
    // Last run three days ago: three fires missed, one run now.
    let last = BTreeMap::from([("xnat".to_owned(), utc(2026, 6, 7, 0, 0))]);
    let mut s = Scheduler::new(schedule(), &last, Missed::CatchUp, now);
    assert_eq!(s.next_run("xnat"), Some(now));
    assert_eq!(s.due(now), vec!["xnat".to_owned()]);
    assert!(s.due(now).is_empty(), "one catch-up run, not three");
    assert_eq!(s.next_run("xnat"), Some(utc(2026, 6, 11, 0, 0)));

    let s = Scheduler::new(schedule(), &last, Missed::Skip, now);
    assert_eq!(s.next_run("xnat"), Some(utc(2026, 6, 11, 0, 0)));

    // Ran after today's fire: nothing missed.
    let last = BTreeMap::from([("xnat".to_owned(), utc(2026, 6, 10, 0, 0))]);
    let s = Scheduler::new(schedule(), &last, Missed::CatchUp, now);
    assert_eq!(s.next_run("xnat"), Some(utc(2026, 6, 11, 0, 0)));

    // Never synced: due at once under catch-up.
    let s = Scheduler::new(schedule(), &BTreeMap::new(), Missed::CatchUp, now);
    assert_eq!(s.next_run("xnat"), Some(now));
}

#[test]
fn jitter_delays_within_its_bound_and_stays_put_across_restarts() {
    let s = Schedule::new("0 2 * * *", paris(), 600).unwrap();
    let fire = utc(2026, 6, 2, 0, 0);
    let starts: Vec<DateTime<Utc>> = ["xnat", "redcap", "omero", "transmart", "elabftw"]
        .iter()
        .map(|src| s.jittered(src, fire))
        .collect();
    for t in &starts {
        assert!(*t >= fire && *t <= fire + TimeDelta::seconds(600), "{t}");
    }
    assert!(
        starts.iter().any(|t| *t != starts[0]),
        "sources due together spread out: {starts:?}"
    );
    assert_eq!(s.jittered("xnat", fire), starts[0]);
    let none = Schedule::new("0 2 * * *", paris(), 0).unwrap();
    assert_eq!(none.jittered("xnat", fire), fire);
}

#[test]
fn bad_expressions_and_zones_are_named() {
    let e = Schedule::new("0 25 * * *", Zone::Local, 0).unwrap_err();
    assert!(e.to_string().contains("\"0 25 * * *\""), "{e}");
    let e = Schedule::new("61 * * * *", Zone::Local, 0).unwrap_err();
    assert!(e.to_string().contains("invalid cron expression"), "{e}");
    let every_2s = Schedule::new("*/2 * * * * *", Zone::Local, 0).unwrap();
    let t = utc(2026, 6, 1, 0, 0);
    assert_eq!(every_2s.next_fire(t), Some(t + TimeDelta::seconds(2)));
    let e = Zone::parse(Some("Europe/Pariss")).unwrap_err();
    assert!(e.to_string().contains("Europe/Pariss"), "{e}");
    assert!(Schedule::new("0 0 30 2 *", Zone::Local, 0).is_err());
    assert!(Schedule::new("@daily", Zone::Local, 0).is_ok());
    assert!("hourly".parse::<Missed>().is_err());
}
