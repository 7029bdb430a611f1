//! Idle means idle (issue 16): two real `syncsphere sync` processes holding a synced folder of
//! a few thousand files do nothing while nothing changes — no sync pass, no folder scan, and
//! next to no CPU — and still see the next change at once, by a scan of just its folder.
//!
//! The CPU figure is read from `/proc/<pid>/stat` (user + system ticks); before this test
//! existed two such clients used 1.48 cores between them (a scan opened every folder, the
//! watcher reported the opens, and the next scan followed).

use std::time::{Duration, Instant};

use syncsphere_e2e::{Device, Server, signed_in_pair, wait_for};

const FILES: u64 = 2_000;
const IDLE: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(180);

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space whatever the kernel's
    // own tick rate.
    ticks as f64 / 100.0
}

fn work(d: &Device) -> (u64, u64) {
    let (passes, full, _) = work3(d);
    (passes, full)
}

/// Passes, full scans and partial scans so far.
fn work3(d: &Device) -> (u64, u64, u64) {
    let s = d.status().expect("status.json");
    let w = &s["work"];
    (
        w["passes"].as_u64().expect("work.passes"),
        w["full_scans"].as_u64().expect("work.full_scans"),
        w["partial_scans"].as_u64().expect("work.partial_scans"),
    )
}

fn until_up_to_date(d: &Device, what: &str) {
    wait_for(WAIT, || {
        d.is_up_to_date() && d.status().is_some_and(|s| s["synced_files"] == FILES)
    })
    .unwrap_or_else(|| panic!("{what}: {:?}\n{}", d.status(), d.log()));
}

#[test]
fn idle_clients_do_nothing_and_still_see_the_next_change() {
    let server = Server::start(None).expect("server starts");
    let (a, b) = signed_in_pair(&server, "idle@example.com");
    for i in 0..FILES {
        let dir = a.path(&format!("folder-{:02}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("file-{i:05}.txt")), format!("file {i}\n")).unwrap();
    }
    let pa = a.start_sync().unwrap();
    let pb = b.start_sync().unwrap();
    until_up_to_date(&a, "A uploads");
    until_up_to_date(&b, "B downloads");
    // The last downloads' watcher events and the passes they cause die down.
    let mut last = (work(&a), work(&b));
    let quiet = Instant::now();
    loop {
        std::thread::sleep(Duration::from_secs(3));
        let now = (work(&a), work(&b));
        if now == last {
            break;
        }
        assert!(
            quiet.elapsed() < Duration::from_secs(60),
            "the clients never came to rest: {now:?}\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        );
        last = now;
    }

    let before = (work(&a), work(&b));
    let cpu_before = (cpu_seconds(pa.pid()), cpu_seconds(pb.pid()));
    std::thread::sleep(IDLE);
    let after = (work(&a), work(&b));
    let cpu = (
        cpu_seconds(pa.pid()) - cpu_before.0,
        cpu_seconds(pb.pid()) - cpu_before.1,
    );
    let idle_s = IDLE.as_secs_f64();
    println!(
        "idle {idle_s} s with {FILES} files: passes A {} B {}, full scans A {} B {}, \
         CPU A {:.3} s B {:.3} s ({:.4} cores together)",
        after.0.0 - before.0.0,
        after.1.0 - before.1.0,
        after.0.1 - before.0.1,
        after.1.1 - before.1.1,
        cpu.0,
        cpu.1,
        (cpu.0 + cpu.1) / idle_s
    );
    for (name, (b0, a0)) in [("A", (before.0, after.0)), ("B", (before.1, after.1))] {
        // The (long) poll may start one pass a minute; it finds nothing and scans nothing.
        assert!(
            a0.0 - b0.0 <= 1,
            "{name} ran {} passes while idle",
            a0.0 - b0.0
        );
        assert_eq!(a0.1, b0.1, "{name} scanned its folder while idle");
    }
    // 2 % of one core between the two: a pass over 2,000 files alone costs more than that.
    assert!(
        cpu.0 + cpu.1 < 0.02 * idle_s,
        "idle clients used {:.3} CPU-seconds in {idle_s} s",
        cpu.0 + cpu.1
    );

    // Still awake: a change on A reaches B at once (no rescan timer needed), and A looks at
    // it by listing only the folder the watcher named, not all 2,000 files.
    let a_before = work3(&a);
    let started = Instant::now();
    std::fs::write(a.path("folder-07/after-idle.txt"), b"still here").unwrap();
    wait_for(Duration::from_secs(30), || {
        std::fs::read(b.path("folder-07/after-idle.txt")).is_ok_and(|c| c == b"still here")
    })
    .unwrap_or_else(|| panic!("B never got the change\nA:\n{}\nB:\n{}", a.log(), b.log()));
    println!("a change after idling reached B in {:?}", started.elapsed());
    // (B may hold the file before A's status file says what A did: wait for that too.)
    wait_for(Duration::from_secs(30), || {
        a.is_up_to_date() && work3(&a).2 > a_before.2
    })
    .unwrap_or_else(|| panic!("A never ran a partial scan: {:?}\n{}", work3(&a), a.log()));
    let a_after = work3(&a);
    assert_eq!(
        a_after.1, a_before.1,
        "A scanned its whole folder for one change"
    );
}
