//! How the server starts on its data file: a 0-byte file is refused (exit code 2, a message
//! naming the file and the ways forward) unless `--accept-empty-data-file` is given; a missing
//! file becomes a new database, as always. And, where a tmpfs can be mounted (root), a full disk
//! under a running server: sets fail with the cause, gets go on, and sets work again once space
//! is freed, without a restart.

mod common;

use common::{connect, free_port, http_get, recv_json, send_json, server_command, Ws};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A fresh directory under the system's temporary one, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("happn-rs-store-faults-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Wait (at most `within`) for `child` to exit: its code, or `None` if it is still running.
fn exit_code_within(child: &mut Child, within: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn an_empty_data_file_stops_the_server_with_exit_code_2() {
    let dir = TempDir::new("empty");
    let file = dir.path().join("happn.redb");
    std::fs::write(&file, b"").unwrap();
    let mut child = server_command(free_port())
        .arg("--data-dir")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn happn-rs");
    let code = exit_code_within(&mut child, Duration::from_secs(20));
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server started on a 0-byte data file");
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&file.display().to_string())
            && stderr.contains("0 bytes")
            && stderr.contains("delete the file")
            && stderr.contains("--accept-empty-data-file"),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "the refused file was changed");
}

#[tokio::test]
async fn a_missing_data_file_or_an_accepted_empty_one_starts_a_new_database() {
    for accept in [false, true] {
        let dir = TempDir::new(if accept { "accepted" } else { "missing" });
        let file = dir.path().join("happn.redb");
        let port = free_port();
        let mut cmd = server_command(port);
        if accept {
            std::fs::write(&file, b"").unwrap();
            cmd.arg("--accept-empty-data-file");
        }
        let mut child = cmd.arg("--data-dir").arg(dir.path()).spawn().expect("spawn happn-rs");
        // It listens: a websocket connects.
        let ws = connect(port).await;
        drop(ws);
        assert!(std::fs::metadata(&file).unwrap().len() > 0, "no database in {}", file.display());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

/// Send a request and wait for its response (events and other frames skipped).
async fn call(ws: &mut Ws, v: Value) -> Value {
    send_json(ws, v).await;
    loop {
        let r = recv_json(ws).await;
        if r["_meta"]["type"] == "response" {
            return r;
        }
    }
}

/// A 2 MiB tmpfs (needs root; `None` where mounting is not allowed), unmounted when dropped.
struct Tmpfs(TempDir);

impl Tmpfs {
    fn mount() -> Option<Tmpfs> {
        let dir = TempDir::new("tmpfs");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_sets_until_space_is_freed_without_a_restart() {
    let Some(fs) = Tmpfs::mount() else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let ballast = fs.0.path().join("ballast");
    std::fs::write(&ballast, vec![0u8; 512 * 1024]).unwrap();
    let port = free_port();
    let mut server = server_command(port)
        .arg("--data-dir")
        .arg(fs.0.path())
        .spawn()
        .expect("spawn happn-rs");
    let mut ws = connect(port).await;
    assert_eq!(
        call(&mut ws, json!({"action":"login","eventId":0,"data":{}})).await["_meta"]["status"],
        "ok"
    );
    let body = "z".repeat(8000);
    let mut acked = 0u64;
    let error = loop {
        let r = call(
            &mut ws,
            json!({"action":"set","eventId":acked + 1,"path":format!("/fill/{acked}"),"data":{"v":body}}),
        )
        .await;
        if r["_meta"]["status"] != "ok" {
            break r;
        }
        acked += 1;
        assert!(acked < 2000, "a 2 MiB filesystem never filled up");
    };
    assert!(acked > 5, "only {acked} sets fit");
    assert!(error.to_string().contains("disk full"), "{error}");

    // While full: sets fail with the cause (at once while the store waits to reopen its file;
    // once reopened, a set that fits in the file's free pages may succeed), and gets answer as
    // before, quickly.
    let mut id = 10_000;
    let mut refused = 0;
    let mut not_ready = 0;
    for i in 0..20 {
        id += 1;
        let t = Instant::now();
        let path = format!("/during/{i}");
        let r = call(&mut ws, json!({"action":"set","eventId":id,"path":path,"data":{"v":body}})).await;
        if r["_meta"]["status"] != "ok" {
            assert!(r.to_string().contains("disk full"), "{r}");
            refused += 1;
            // The store refuses writes until it has reopened its file: not ready meanwhile.
            let (status, body) = http_get(&format!("127.0.0.1:{port}"), "/ready").await;
            if status == 503 {
                assert!(body.contains("store unavailable") && body.contains("disk full"), "{body}");
                not_ready += 1;
            }
        }
        id += 1;
        let r = call(&mut ws, json!({"action":"get","eventId":id,"path":"/fill/0"})).await;
        assert_eq!(r["data"]["v"], json!(body));
        assert!(t.elapsed() < Duration::from_millis(200), "a set and a get took {:?}", t.elapsed());
    }
    assert!(refused > 0, "every set succeeded on a full disk");
    assert!(not_ready > 0, "/ready never said the store refuses writes");

    // Space is back: sets work again on the same server.
    std::fs::remove_file(&ballast).unwrap();
    let start = Instant::now();
    loop {
        id += 1;
        let r = call(&mut ws, json!({"action":"set","eventId":id,"path":"/after","data":{"v":1}})).await;
        if r["_meta"]["status"] == "ok" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "sets still fail 15 s after space was freed: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_get(&format!("127.0.0.1:{port}"), "/ready").await.0, 200, "ready again");
    for i in [0, acked / 2, acked - 1] {
        id += 1;
        let r = call(&mut ws, json!({"action":"get","eventId":id,"path":format!("/fill/{i}")})).await;
        assert_eq!(r["data"]["v"], json!(body), "acknowledged /fill/{i}");
    }
    drop(ws);
    server.kill().unwrap();
    server.wait().unwrap();
    drop(fs);
}
