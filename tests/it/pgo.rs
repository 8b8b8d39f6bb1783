//! The workload that bench/pgo.sh trains the release build on (docker/Dockerfile ships that
//! build): it runs here against the test build, so that a change to the config or the CLI
//! that breaks it fails CI, not the next image build. The script itself checks that every
//! answer of a scenario is a 2xx, or that none is.

use std::path::Path;
use std::process::Command;

/// True when nginx and wrk, which the workload runs, are installed. Without them the test
/// says so and is skipped, except under CI, where it fails (`.ci/run` installs both).
fn tools_present() -> bool {
    let missing: Vec<&str> = ["nginx", "wrk"]
        .into_iter()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{} not installed (apt-get install nginx-light wrk): the profile training test cannot run",
        missing.join(" and ")
    );
    assert!(std::env::var_os("CI").is_none(), "{message}");
    eprintln!("SKIPPED: {message}");
    false
}

#[test]
fn the_profile_training_workload_gets_the_answers_it_expects() {
    if !tools_present() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("bench/pgo-train.sh"))
        .arg(env!("CARGO_BIN_EXE_cryptr-gateway"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Its gateways exited with it: an instrumented one writes its counts only when it does.
    let left: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("cryptr-gateway") && c.contains("cached.yaml"))
        .collect();
    assert!(left.is_empty(), "still running: {left:?}");
    // Every scenario ran, in order, and served requests: one token, many, never-seen, the
    // public route, a forged signature, no token, a preflight.
    let ran: Vec<(&str, &str, u64)> = stdout
        .lines()
        .filter_map(|l| {
            let mut words = l.strip_prefix("pgo-train: ")?.split_whitespace();
            let (want, url, count) = (words.next()?, words.next()?, words.next()?);
            Some((want, url, count.parse().ok()?))
        })
        .collect();
    let expected = [
        ("ok", "/api/v1/courses"),
        ("ok", "/api/v1/courses"),
        ("ok", "/api/v1/courses"),
        ("ok", "/public/courses"),
        ("refused", "/api/v1/courses"),
        ("refused", "/api/v1/courses"),
        ("ok", "/api/v1/courses"),
    ];
    assert_eq!(ran.len(), expected.len(), "{stdout}");
    for ((want, url, count), (expected_want, path)) in ran.iter().zip(expected) {
        assert_eq!(*want, expected_want, "{stdout}");
        assert!(url.ends_with(path) && *count > 0, "{stdout}");
    }
}
