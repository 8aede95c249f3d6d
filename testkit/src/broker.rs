//! A RabbitMQ virtual host of its own per test ([`Vhost`]), on the machine's broker or on
//! the 3-node test cluster of `scripts/rabbit-cluster.sh`, so tests run in parallel
//! against one broker without seeing each other's queues.

use std::process::Command;

use uuid::Uuid;

/// A throwaway vhost, `merit-t-<uuid>`, with full permissions for `guest`; deleted by
/// [`Vhost::delete`], or when dropped (a failing test cleans up too).
#[derive(Debug)]
pub struct Vhost {
    /// The vhost's name.
    pub name: String,
    /// Its AMQP URL (on the test cluster: its three nodes, comma-separated, node 1 first).
    pub url: String,
    cluster: bool,
    deleted: bool,
}

impl Vhost {
    /// A vhost on the machine's broker (`127.0.0.1:5672`).
    pub fn create() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let name = format!("merit-t-{}", Uuid::new_v4().simple());
        let vhost = Self {
            url: format!("amqp://guest:guest@127.0.0.1:5672/{name}"),
            name,
            cluster: false,
            deleted: false,
        };
        vhost.add();
        vhost
    }

    /// A vhost on the 3-node RabbitMQ cluster of `scripts/rabbit-cluster.sh` (started if
    /// it is not up).
    pub fn on_cluster() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        rabbit_cluster(&["start"]);
        let name = format!("merit-t-{}", Uuid::new_v4().simple());
        rabbit_cluster(&["ctl", "1", "add_vhost", &name]);
        rabbit_cluster(&[
            "ctl",
            "1",
            "set_permissions",
            "-p",
            &name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
        let url = rabbit_cluster(&["urls", &name]).trim().to_string();
        Self {
            name,
            url,
            cluster: true,
            deleted: false,
        }
    }

    /// (Re)creates the vhost on the machine's broker, empty, with full permissions for
    /// `guest`.
    pub fn add(&self) {
        rabbitmqctl(&["add_vhost", &self.name]);
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
    }

    /// The AMQP URL of this vhost.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Removes every message from `queue` of this vhost.
    pub fn purge(&self, queue: &str) {
        rabbitmqctl(&["purge_queue", "-p", &self.name, queue]);
    }

    /// Forcibly closes every client connection to this vhost (and only this vhost; the
    /// broker stays up).
    pub fn close_connections(&self) {
        rabbitmqctl(&["close_all_connections", "-p", &self.name, "closed by test"]);
    }

    /// A broker user with the permissions the README gives a producer on this vhost (write
    /// on `merit.events` only, nothing to configure or read): `(user, AMQP URL)`. Remove it
    /// with [`Vhost::delete_user`].
    pub fn producer_user(&self) -> (String, String) {
        let user = format!("producer-{}", Uuid::new_v4().simple());
        rabbitmqctl(&["add_user", &user, "producer-password"]);
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            &user,
            "^$",
            "^merit\\.events$",
            "^$",
        ]);
        let url = format!(
            "amqp://{user}:producer-password@127.0.0.1:5672/{}",
            self.name
        );
        (user, url)
    }

    /// Removes a user made by [`Vhost::producer_user`].
    pub fn delete_user(&self, user: &str) {
        rabbitmqctl(&["delete_user", user]);
    }

    /// Deletes the vhost now, failing the test if the broker refuses.
    pub fn delete(mut self) {
        self.deleted = true;
        if self.cluster {
            rabbit_cluster(&["ctl", "1", "delete_vhost", &self.name]);
        } else {
            rabbitmqctl(&["delete_vhost", &self.name]);
        }
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Best effort: a test that failed still leaves no vhost behind.
        let _ = if self.cluster {
            Command::new("timeout")
                .args(["60", "bash", CLUSTER_SCRIPT, "ctl", "1", "delete_vhost"])
                .arg(&self.name)
                .output()
        } else {
            Command::new("timeout")
                .args(["60", "rabbitmqctl", "-q", "delete_vhost"])
                .arg(&self.name)
                .output()
        };
    }
}

/// `scripts/rabbit-cluster.sh` of this workspace.
const CLUSTER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/rabbit-cluster.sh");

/// Runs `rabbitmqctl ARGS` (bounded: a broker that stops answering its CLI fails the test
/// instead of hanging it), panicking with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    bounded(120, &["rabbitmqctl", "-q"], args);
}

/// Runs `scripts/rabbit-cluster.sh ARGS` (bounded) and returns its output.
pub fn rabbit_cluster(args: &[&str]) -> String {
    bounded(300, &["bash", CLUSTER_SCRIPT], args)
}

/// Runs `command` with `args` under `timeout secs`; panics with its output unless it
/// succeeds, and returns its standard output.
fn bounded(secs: u32, command: &[&str], args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .args(command)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{command:?} runs (run .ci/run to install it): {e}"));
    assert!(
        out.status.success(),
        "{command:?} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
