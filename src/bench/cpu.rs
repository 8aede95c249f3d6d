//! CPU time spent by the processes a vote passes through: this one (merit), RabbitMQ
//! (`beam.smp`) and PostgreSQL (every `postgres` process: the postmaster, its helpers and
//! one backend per connection), read from `/proc/<pid>/stat` (`utime` + `stime`) before and
//! after a stage. Linux only; elsewhere every figure reads zero.
//!
//! A process found only after the stage started (a PostgreSQL backend for a connection the
//! stage opened) counts from zero; one gone before it ended (a backend whose connection
//! closed) is not counted after it left, so PostgreSQL's figure can come out a little low
//! when the pool churns. The clock tick comes from `getconf CLK_TCK`, 100 if that fails.

use std::{collections::HashMap, sync::OnceLock};

use serde::Serialize;

/// CPU seconds per process group at one instant, by pid.
#[derive(Debug, Clone, Default)]
pub(super) struct Sample {
    merit: f64,
    rabbitmq: HashMap<u32, f64>,
    postgres: HashMap<u32, f64>,
}

/// CPU seconds a stage took per vote, by process group.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(super) struct PerVote {
    /// This process (the node, the load generator and the bench's own clients).
    pub(super) merit_ms: f64,
    /// RabbitMQ's `beam.smp`.
    pub(super) rabbitmq_ms: f64,
    /// Every `postgres` process together.
    pub(super) postgres_ms: f64,
}

impl PerVote {
    /// The three together.
    pub(super) fn total_ms(&self) -> f64 {
        self.merit_ms + self.rabbitmq_ms + self.postgres_ms
    }
}

/// Takes a sample now.
pub(super) fn sample() -> Sample {
    let mut s = Sample {
        merit: stat_secs("self").unwrap_or(0.0),
        ..Sample::default()
    };
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return s;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        let group = match comm.trim() {
            "beam.smp" => &mut s.rabbitmq,
            "postgres" => &mut s.postgres,
            _ => continue,
        };
        if let Some(secs) = stat_secs(&pid.to_string()) {
            group.insert(pid, secs);
        }
    }
    s
}

/// CPU time from `before` to `after`, in milliseconds per vote of `votes`.
pub(super) fn per_vote(before: &Sample, after: &Sample, votes: u32) -> PerVote {
    let grown = |b: &HashMap<u32, f64>, a: &HashMap<u32, f64>| -> f64 {
        a.iter()
            .map(|(pid, secs)| (secs - b.get(pid).copied().unwrap_or(0.0)).max(0.0))
            .sum()
    };
    let per = |secs: f64| secs * 1000.0 / f64::from(votes.max(1));
    PerVote {
        merit_ms: per((after.merit - before.merit).max(0.0)),
        rabbitmq_ms: per(grown(&before.rabbitmq, &after.rabbitmq)),
        postgres_ms: per(grown(&before.postgres, &after.postgres)),
    }
}

/// `utime + stime` of `/proc/{pid}/stat`, seconds.
fn stat_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: fields are counted
    // from the last ')'. After it: state (3), …, utime (14), stime (15).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when it cannot be read.
pub(super) fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_deltas_are_per_vote() {
        let before = sample();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let after = sample();
        assert!(after.merit >= before.merit);
        let v = per_vote(&before, &after, 10);
        assert!(v.merit_ms >= 0.0 && v.rabbitmq_ms >= 0.0 && v.postgres_ms >= 0.0);
    }
}
