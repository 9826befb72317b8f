//! Online backup: `GET /_admin/export` and `happn-rs backup`, against the release binary. A
//! backup taken under concurrent writes restores (`happn-rs import --nedb`) into a fresh data
//! directory with every write acknowledged before it began, each writer's writes a prefix (one
//! moment); in secure mode only an `_ADMIN` member gets the file, a permission alone is not enough.

mod common;

use common::{connect, free_port, http_get, server_command, Proc};
use happn_client::{Client, ClientConfig, SetOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn happn(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_happn-rs"));
    c.args(args).env_remove("HAPPN_PASSWORD").env_remove("HAPPN_TOKEN");
    c
}

/// Run to the end (60 s at most), on a blocking thread, with `stdin`.
async fn run(c: Command, stdin: &'static str) -> Output {
    tokio::task::spawn_blocking(move || common::run_to_end(c, stdin, Duration::from_secs(60)))
        .await
        .unwrap()
}

/// Run a data-directory tool (`import`, `export`) to success.
async fn tool(args: &[&str]) {
    let out = run(happn(args), "").await;
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("happn-backup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The records of a nedb file, by path.
fn records(file: &Path) -> std::collections::BTreeMap<String, happn_engine::Record> {
    let text = std::fs::read_to_string(file).unwrap();
    let loaded = happn_engine::nedb::parse(&text).unwrap();
    assert_eq!(loaded.skipped, 0);
    loaded.records.into_iter().map(|r| (r.path.clone(), r)).collect()
}

const WRITERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_writes_restores_everything_acknowledged_before_it() {
    let dir = scratch("writes");
    let port = free_port();
    let _server = Proc(server_command(port).arg("--data-dir").arg(dir.join("data")).spawn().unwrap());
    drop(connect(port).await);
    let url = format!("ws://127.0.0.1:{port}");

    // Writers set /load/<w>/<i> in order, each noting how many were acknowledged.
    let acked: Arc<Vec<AtomicUsize>> = Arc::new((0..WRITERS).map(|_| AtomicUsize::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = Client::connect(ClientConfig::from_url(url.clone())).await.unwrap();
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..100_000usize {
                if stop.load(Ordering::Acquire) {
                    break;
                }
                let path = format!("/load/{w}/{i:06}");
                client.set(&path, &json!({"w": w, "i": i}), SetOptions::default()).await.unwrap();
                acked[w].store(i + 1, Ordering::Release);
            }
            let _ = client.disconnect().await;
        }));
    }
    // Some writes first, then the backup while they go on.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.iter().map(|a| a.load(Ordering::Acquire)).sum::<usize>() < 400 {
        assert!(Instant::now() < deadline, "the writers did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before: Vec<usize> = acked.iter().map(|a| a.load(Ordering::Acquire)).collect();
    let file = dir.join("backup.nedb");
    let out = run(happn(&["backup", "--url", &url, "--out", file.to_str().unwrap()]), "").await;
    let after: Vec<usize> = acked.iter().map(|a| a.load(Ordering::Acquire)).collect();
    stop.store(true, Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }
    assert!(out.status.success(), "backup: {}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        after.iter().zip(&before).any(|(a, b)| a > b),
        "the writers kept writing during the backup"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a backup holds password hashes: owner only");
    }

    // Restore into a fresh data directory, and read it back from there.
    let fresh = dir.join("restored");
    let again = dir.join("again.nedb");
    let (file_arg, fresh_arg, again_arg) = (file.to_str().unwrap(), fresh.to_str().unwrap(), again.to_str().unwrap());
    tool(&["import", "--nedb", file_arg, "--data-dir", fresh_arg]).await;
    tool(&["export", "--data-dir", fresh_arg, "--out", again_arg]).await;
    let backed_up = records(&file);
    let restored = records(&again);
    assert_eq!(printed["records"], json!(backed_up.len()), "{printed}");
    assert_eq!(restored, backed_up, "the restore holds exactly the backup");
    eprintln!(
        "backup of {} records; writes acknowledged before it {before:?}, after it {after:?}",
        backed_up.len()
    );
    for w in 0..WRITERS {
        let mine: Vec<&happn_engine::Record> = restored
            .range(format!("/load/{w}/")..format!("/load/{w}0"))
            .map(|(_, r)| r)
            .collect();
        assert!(
            mine.len() >= before[w] && mine.len() <= after[w],
            "writer {w}: {} restored, {} acknowledged before the backup, {} after",
            mine.len(),
            before[w],
            after[w]
        );
        for (i, r) in mine.iter().enumerate() {
            assert_eq!(r.path, format!("/load/{w}/{i:06}"), "writer {w}'s writes are a prefix");
            assert_eq!(r.data.json(), json!({"w": w, "i": i}).to_string());
        }
    }
    // The security records come with their password hashes: that is what restores logins.
    let admin = &restored["/_SYSTEM/_SECURITY/_USER/_ADMIN"];
    assert!(admin
        .data
        .map()
        .get("password")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_gets_the_export_of_a_secure_server() {
    let dir = scratch("secure");
    let port = free_port();
    // `ops` may GET every HTTP route: a permission is not membership of _ADMIN.
    let config = json!({
        "secure": true,
        "adminUser": {"password": "admin-pw"},
        "groups": [{"name": "ops", "permissions": {"/@HTTP/*": {"actions": ["*"]}, "*": {"actions": ["get"]}}}],
        "users": [{"username": "bob", "password": "bob-pw", "groups": ["ops"]}]
    });
    let _server = Proc(
        server_command(port)
            .arg("--memory")
            .env("HAPPN_SERVER_CONFIG", config.to_string())
            .spawn()
            .unwrap(),
    );
    drop(connect(port).await);
    let addr = format!("127.0.0.1:{port}");
    let url = format!("ws://{addr}");
    let token = |user: &str, pw: &str| {
        let (addr, path) = (addr.clone(), format!("/auth/login?username={user}&password={pw}"));
        async move {
            let (status, body) = http_get(&addr, &path).await;
            assert_eq!(status, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            v["data"].as_str().unwrap().to_string()
        }
    };
    let secret = |body: &str| body.contains("_SECURITY") || body.contains("password");

    // No token, a bad one, a non-admin's: 403, and nothing of the store in the reply.
    for path in [
        "/_admin/export".to_string(),
        "/_admin/export?happn_token=garbage".to_string(),
        format!("/_admin/export?happn_token={}", token("bob", "bob-pw").await),
    ] {
        let (status, body) = http_get(&addr, &path).await;
        assert_eq!(status, 403, "{path}: {body}");
        assert!(!secret(&body), "{body}");
    }
    // The command line as bob: refused (exit 1), and no file.
    let backup_as = |user: &str, file: &Path| {
        let mut c = happn(&["backup", "--url", &url, "--out", file.to_str().unwrap()]);
        c.args(["--username", user, "--password-stdin"]);
        c
    };
    let file = dir.join("bob.nedb");
    let out = run(backup_as("bob", &file), "bob-pw\n").await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    assert!(
        !file.exists() && std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing written"
    );

    // The admin's token works (query string here), and so does the command line.
    let (status, body) = http_get(&addr, &format!("/_admin/export?happn_token={}", token("_ADMIN", "admin-pw").await)).await;
    assert_eq!(status, 200);
    assert!(body.contains("/_SYSTEM/_SECURITY/_USER/bob"));
    let file = dir.join("admin.nedb");
    let out = run(backup_as("_ADMIN", &file), "admin-pw\n").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let backed_up = records(&file);
    let bob = &backed_up["/_SYSTEM/_SECURITY/_USER/bob"];
    assert!(bob
        .data
        .map()
        .get("password")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty()));
    assert!(backed_up.contains_key("/_SYSTEM/_SECURITY/_GROUP/ops"));
    let _ = std::fs::remove_dir_all(&dir);
}
