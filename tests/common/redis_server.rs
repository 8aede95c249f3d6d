//! Redis for the cache tests (tests/cache.rs, tests/cache_nodes/).

/// The shared Redis of the cache tests: `MERIT_TEST_REDIS_URL`, by default
/// `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("MERIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Test logs to the test writer, filtered by `RUST_LOG` or else by `default_filter`.
pub fn init_test_logs(default_filter: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_test_writer()
        .try_init();
}

/// A `redis-server` of a test's own on `port` (no persistence), so a test can stop, hang
/// or kill it without touching the shared one; SIGKILLed when dropped.
pub struct OwnRedis {
    child: std::process::Child,
}

impl OwnRedis {
    /// Starts it and waits (up to 10 s) until it accepts connections.
    pub fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (redis-server must be installed)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(
            serves_pid(port, child.id()),
            "127.0.0.1:{port} is answered by another process, not the redis-server started \
             for this test (the port was taken)"
        );
        Self { child }
    }

    /// Sends `signal` (`-STOP`, `-CONT`): SIGSTOP hangs the server (connections stay
    /// open, nothing answers), SIGCONT resumes it.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    /// SIGKILL: the server vanishes mid-conversation, with everything it held.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the Redis answering on `port` is the process `pid` (its `INFO server` says
/// `process_id:<pid>`). Keeps trying for a second, while a just-started server loads.
fn serves_pid(port: u16, pid: u32) -> bool {
    use std::io::{Read, Write};
    let wanted = format!("process_id:{pid}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::time::Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(500)));
            let mut text = String::new();
            if stream.write_all(b"INFO server\r\n").is_ok() {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if text.contains("tcp_port:") {
                        break;
                    }
                }
            }
            if text.contains("process_id:") {
                return text.lines().any(|line| line.trim() == wanted);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
