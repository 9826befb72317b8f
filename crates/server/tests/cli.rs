//! The command-line client (`happn-rs get | set | remove | watch | status`) against a running
//! server, insecure and secure: JSON on standard output, and the documented exit codes.

mod common;

use common::{connect, free_port, server_command, Proc};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn happn(url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_happn-rs"));
    c.args(args)
        .arg("--url")
        .arg(url)
        .env_remove("HAPPN_PASSWORD")
        .env_remove("HAPPN_TOKEN");
    c
}

/// Run to the end (20 s at most) with `stdin` as standard input.
fn run(c: Command, stdin: &str) -> Output {
    common::run_to_end(c, stdin, Duration::from_secs(20))
}

/// The JSON a successful command printed.
fn ok(c: Command) -> Value {
    let out = run(c, "");
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn code(c: Command, stdin: &str) -> i32 {
    run(c, stdin).status.code().unwrap()
}

async fn start(config: Value) -> (Proc, String) {
    let port = free_port();
    let child = server_command(port)
        .arg("--memory")
        .env("HAPPN_SERVER_CONFIG", config.to_string())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    drop(connect(port).await);
    (proc, format!("ws://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_set_remove_watch_and_status_on_an_insecure_server() {
    let (_server, url) = start(json!({"name": "cli-test"})).await;
    let stored = ok(happn(&url, &["set", "/cli/a", r#"{"n": 1, "s": "x"}"#]));
    assert_eq!((&stored["n"], &stored["_meta"]["path"]), (&json!(1), &json!("/cli/a")), "{stored}");
    let merged = ok(happn(&url, &["set", "/cli/a", r#"{"m": 2}"#, "--merge"]));
    assert_eq!((&merged["n"], &merged["m"]), (&json!(1), &json!(2)), "{merged}");
    assert_eq!(ok(happn(&url, &["get", "/cli/a"]))["m"], 2);
    assert_eq!(ok(happn(&url, &["get", "/cli/missing"])), Value::Null);
    let many = ok(happn(&url, &["get", "/cli/*", "--criteria", r#"{"n": {"$gt": 0}}"#]));
    assert_eq!(many.as_array().map(Vec::len), Some(1), "{many}");
    assert_eq!(
        ok(happn(&url, &["get", "/cli/*", "--options", r#"{"count": true}"#])),
        json!({"count": 1})
    );

    // watch: one JSON line per event, until interrupted (SIGINT: exit 0).
    let mut watch = happn(&url, &["watch", "/cli/*"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel::<Value>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).expect("a JSON line")).is_err() {
                return;
            }
        }
    });
    // Until the watch is subscribed: a write it sees.
    let mut subscribed = false;
    for _ in 0..100 {
        ok(happn(&url, &["set", "/cli/tick", "{}"]));
        if lines.recv_timeout(Duration::from_millis(100)).is_ok() {
            subscribed = true;
            break;
        }
    }
    assert!(subscribed, "the watch never saw a write");
    ok(happn(&url, &["set", "/cli/b", r#"{"v": true}"#]));
    assert_eq!(ok(happn(&url, &["remove", "/cli/b"])), json!({"removed": 1}));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|e: &Value| e["event"] == "remove" && e["path"] == "/cli/b") {
        assert!(Instant::now() < deadline, "events so far: {seen:?}");
        if let Ok(e) = lines.recv_timeout(Duration::from_millis(100)) {
            seen.push(e);
        }
    }
    let set_b = seen
        .iter()
        .find(|e| e["event"] == "set" && e["path"] == "/cli/b")
        .expect("the set event");
    assert_eq!(set_b["data"], json!({"v": true}));
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(watch.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = watch.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "watch did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));

    let status = ok(happn(&url, &["status"]));
    assert_eq!(
        (&status["name"], &status["secure"]),
        (&json!("cli-test"), &json!(false)),
        "{status}"
    );
    assert_eq!(
        (&status["health"]["status"], &status["ready"]["status"]),
        (&json!("ok"), &json!("ready")),
        "{status}"
    );

    // Exit codes: 2 for bad arguments, 3 when nothing answers.
    assert_eq!(code(happn(&url, &["get", "/x", "--criteria", "{nope"]), ""), 2);
    assert_eq!(code(happn(&url, &["set", "/x", "not json"]), ""), 2);
    let closed = format!("ws://127.0.0.1:{}", free_port());
    assert_eq!(code(happn(&closed, &["get", "/x"]), ""), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_and_exit_codes_on_a_secure_server() {
    let (_server, url) = start(json!({
        "secure": true,
        "adminUser": {"password": "admin-pw"},
        "groups": [{"name": "readers", "permissions": {"/public/*": {"actions": ["get"]}}}],
        "users": [{"username": "reader", "password": "reader-pw", "groups": ["readers"]}]
    }))
    .await;
    let admin = |args: &[&str]| {
        let mut c = happn(&url, args);
        c.args(["--username", "_ADMIN", "--password-stdin"]);
        c
    };
    let out = run(admin(&["set", "/public/a", r#"{"n": 1}"#]), "admin-pw\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut get = happn(&url, &["get", "/public/a", "--username", "reader"]);
    get.env("HAPPN_PASSWORD", "reader-pw");
    assert_eq!(ok(get)["n"], 1);
    let status = run(admin(&["status"]), "admin-pw\n");
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((&status["secure"], &status["user"]), (&json!(true), &json!("_ADMIN")), "{status}");

    // 1: refused by the server (no permission); 3: the login itself is refused or missing.
    assert_eq!(
        code(
            happn(&url, &["set", "/public/a", "{}", "--username", "reader", "--password", "reader-pw"]),
            ""
        ),
        1
    );
    assert_eq!(code(admin(&["get", "/public/a"]), "wrong\n"), 3);
    assert_eq!(code(happn(&url, &["get", "/public/a"]), ""), 3);
}
