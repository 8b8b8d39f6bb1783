//! The `cryptr-gateway` binary itself: `check`, `run`, signals and exit codes.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cryptr-gateway"));
    c.env_remove("GATEWAY_CONFIG")
        .env_remove("GATEWAY_LISTEN")
        .env_remove("GATEWAY_WORKERS");
    c
}

/// A config file in a fresh temporary folder (removed with the returned guard).
struct TempConfig {
    dir: PathBuf,
    pub path: PathBuf,
}

impl TempConfig {
    fn new(name: &str, text: &str) -> TempConfig {
        let dir =
            std::env::temp_dir().join(format!("cryptr-gateway-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gateway.yaml");
        std::fs::write(&path, text).unwrap();
        TempConfig { dir, path }
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn check_reports_file_line_column_and_field_for_a_typo() {
    let cfg = TempConfig::new(
        "typo",
        "listen: 127.0.0.1:0\nroutes:\n  - name: api\n    match:\n      prefx: /api\n    upstream: builtin:echo\n    auth: none\n",
    );
    let out = bin()
        .arg("check")
        .arg("-c")
        .arg(&cfg.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:5:7: routes[0].match.prefx: unknown field `prefx`",
        cfg.path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("did you mean `prefix`?"), "{stderr}");
}

#[test]
fn check_lists_every_problem_at_once() {
    let cfg = TempConfig::new(
        "many",
        "listen: nowhere\nroutes:\n  - name: a\n    match: { prefix: /a, methods: [GTE] }\n    upstream: builtin:curses\n    auth: none\n  - name: b\n    match: { prefix: /b }\n    upstream: http://127.0.0.1:1\n    timeout: 30\n    auth: none\n",
    );
    let out = bin()
        .arg("check")
        .arg("-c")
        .arg(&cfg.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        ":1:9: listen: `nowhere` is not an address",
        ":4:36: routes[0].match.methods[0]: `GTE` is not an HTTP method",
        "did you mean `GET`?",
        ":5:15: routes[0].upstream: unknown built-in upstream `curses`",
        "did you mean `builtin:courses`?",
        ":10:14: routes[1].timeout: duration `30` has no unit",
        "4 problem(s)",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
}

#[test]
fn check_summarises_the_repos_config() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("gateway.yaml");
    let out = bin()
        .arg("check")
        .env("GATEWAY_CONFIG", &repo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("listen 0.0.0.0:8081"), "{stdout}");
    assert!(
        stdout.contains(
            "courses  prefix /api/v1/courses [GET] -> builtin:courses  auth: token from cryptr"
        ),
        "{stdout}"
    );
}

#[test]
fn every_command_explains_itself_with_an_example() {
    for cmd in ["run", "check", "demo", "token", "keygen", "explain"] {
        let out = bin().arg(cmd).arg("--help").output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Example"), "{cmd}: {help}");
        if matches!(cmd, "run" | "check" | "explain") {
            assert!(help.contains("GATEWAY_CONFIG"), "{cmd}: {help}");
        }
    }
}

#[test]
fn run_refuses_a_port_in_use_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let cfg = TempConfig::new(
        "taken",
        &format!("listen: {addr}\nroutes:\n  - name: e\n    match: {{ prefix: / }}\n    upstream: builtin:echo\n    auth: none\n"),
    );
    let out = bin().arg("run").arg("-c").arg(&cfg.path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

type Lines = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Starts `run` (its config listening on `${TEST_LISTEN}`) and waits for the address it
/// says it listens on; its later log lines follow.
fn start(run: &mut Command) -> (crate::support::KillOnDrop, String, Lines) {
    let mut child = run
        .args(["--log-format", "json"])
        .env("TEST_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .map(crate::support::KillOnDrop)
        .unwrap();
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the gateway exited before listening")
            .unwrap();
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(addr) = json["addr"].as_str() {
            break addr.to_string();
        }
    };
    (child, addr, lines)
}

const COURSES_CONFIG: &str = "listen: ${TEST_LISTEN}\nadmin: { listen: 127.0.0.1:0 }\nroutes:\n  - name: courses\n    match: { prefix: /api/v1/courses }\n    upstream: builtin:courses\n    auth: none\n";

/// The threads of process `pid` named as the gateway's runtime's.
#[cfg(target_os = "linux")]
fn runtime_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == "gateway-worker")
        })
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn run_serves_on_as_many_worker_threads_as_workers_says() {
    let cfg = TempConfig::new("workers", COURSES_CONFIG);
    for (how, expected) in [("--workers", 1), ("GATEWAY_WORKERS", 3)] {
        let mut run = bin();
        run.arg("run").arg("-c").arg(&cfg.path);
        if how == "--workers" {
            run.args(["--workers", "1"]);
        } else {
            run.env(how, expected.to_string());
        }
        let (child, addr, _lines) = start(&mut run);
        let res = reqwest::blocking_get(&format!("http://{addr}/api/v1/courses"));
        assert_eq!(res, 200, "{how}");
        // Nothing here spawns a blocking task (which tokio names alike): all are workers.
        assert_eq!(runtime_threads(child.0.id()), expected, "{how}");
    }
}

#[test]
fn run_refuses_zero_workers_before_reading_its_config() {
    let out = bin()
        .args(["run", "-c", "/nonexistent/gateway.yaml", "--workers", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--workers"), "{stderr}");
    assert!(stderr.contains("1..=1024"), "{stderr}");
}

#[test]
fn run_serves_then_exits_0_on_sigterm() {
    let cfg = TempConfig::new("run", COURSES_CONFIG);
    let (mut child, addr, mut lines) = start(bin().arg("run").arg("-c").arg(&cfg.path));
    let res = reqwest::blocking_get(&format!("http://{addr}/api/v1/courses"));
    assert_eq!(res, 200);
    // The access log line, as a collector reads it.
    let access = loop {
        let line = lines.next().expect("no access log line").unwrap();
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if json["target"] == "access" {
            break json;
        }
    };
    for field in ["timestamp", "request_id", "duration_ms", "upstream_ms"] {
        assert!(!access[field].is_null(), "{field} in {access}");
    }
    assert_eq!(
        access["request_id"].as_str().map(str::len),
        Some(32),
        "{access}"
    );
    assert_eq!(access["route"], "courses");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/api/v1/courses");
    assert_eq!(access["status"], 200);
    assert_eq!(access["upstream"], "builtin:courses");
    assert_eq!(access["auth"], "-");
    assert_eq!(access["sub"], "-");
    child.signal("-TERM");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

/// The access log is written in batches by a thread of its own: every request still has its
/// line, those of the last moment before SIGTERM included.
#[test]
fn every_request_has_its_access_line_when_the_gateway_stops() {
    let cfg = TempConfig::new("access-lines", COURSES_CONFIG);
    let (mut child, addr, lines) = start(bin().arg("run").arg("-c").arg(&cfg.path));
    let url = format!("http://{addr}/api/v1/courses");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sent = 300;
    rt.block_on(async {
        let client = crate::support::client();
        for _ in 0..sent {
            let res = client.get(&url).send().await.unwrap();
            assert_eq!(res.status(), 200);
        }
    });
    child.signal("-TERM");
    // Its stderr ends when it exits.
    let access = lines
        .map_while(Result::ok)
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|json| json["target"] == "access")
        })
        .count();
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
    assert_eq!(access, sent);
}

mod reqwest {
    /// A tiny blocking GET over a fresh runtime (the test itself is synchronous).
    pub fn blocking_get(url: &str) -> u16 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            crate::support::client()
                .get(url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    }
}
