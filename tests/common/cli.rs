//! The `merit` binary run by a test (tests/cli.rs, tests/minter_start.rs, …).

/// Removes terminal colour codes from a log.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Removes every `MERIT_*` variable of the outer environment from `cmd`: a test sets what
/// it needs and nothing else.
pub fn without_merit_env(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("MERIT_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// `merit args` in the crate's directory with only `envs` as its `MERIT_*` variables.
pub fn merit_command(args: &[&str], envs: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_merit"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    without_merit_env(&mut cmd).envs(envs.iter().copied());
    cmd
}

/// What a finished command printed: its stdout, then its stderr.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
