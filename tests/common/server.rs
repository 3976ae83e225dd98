//! Real servers the tests start on loopback (Alertmanager, Prometheus): the
//! binary from an environment variable or PATH, a temporary directory, a
//! free port, and a wait until `/-/ready` answers. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$env`, else the first of `names` on PATH (or in ~/.cargo/bin); panics
/// with how to get one. `package`: the Debian package, or `cargo:CRATE`.
pub fn binary(env: &str, names: &[&str], package: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env) {
        return PathBuf::from(p);
    }
    let cargo_bin = std::env::var("HOME").map(|h| format!("{h}/.cargo/bin")).unwrap_or_default();
    for name in names {
        for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([cargo_bin.as_str()]) {
            let p = PathBuf::from(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    match package.strip_prefix("cargo:") {
        Some(krate) => panic!("no {} binary: cargo install {krate} (scripts/test.sh does) or set {env}", names[0]),
        None => {
            panic!("no {} binary: install the Debian package {package} (scripts/test.sh does) or set {env}", names[0])
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `bin` with `args(dir, port)` and waits for `/-/ready`.
pub fn start(bin: PathBuf, args: impl FnOnce(&std::path::Path, u16) -> Vec<String>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(&bin)
        .args(args(dir.path(), port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ureq::get(&format!("{url}/-/ready")).call().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "{} did not become ready on {url} within 30 s", bin.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { child, url, dir }
}
