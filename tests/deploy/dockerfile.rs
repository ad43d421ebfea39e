//! The `Dockerfile`, read statically: it builds the release binary with
//! the pinned toolchain and the wasm target, its runtime image runs sluice
//! as the sidecars' UID, another stage carries iptables for the init
//! container, and `.dockerignore` leaves `target/` out.

use crate::manifests::{MANIFESTS, read, workspace};
use std::collections::BTreeSet;
use std::path::Path;

/// One stage of the Dockerfile: its base image (ARGs substituted) and its
/// instructions as (INSTRUCTION, arguments).
pub struct Stage {
    from: String,
    lines: Vec<(String, String)>,
}

impl Stage {
    fn all(&self, instruction: &str) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .filter(move |(i, _)| i == instruction)
            .map(|(_, rest)| rest.as_str())
    }

    fn last(&self, instruction: &str) -> Option<&str> {
        self.all(instruction).last()
    }

    /// The index of the first `RUN` with all of `words`.
    fn run_with(&self, words: &[&str]) -> Option<usize> {
        self.lines
            .iter()
            .position(|(i, r)| i == "RUN" && words.iter().all(|w| r.contains(w)))
    }

    /// The program of the exec-form ENTRYPOINT.
    fn entrypoint(&self) -> Option<String> {
        let argv: Vec<String> = serde_json::from_str(self.last("ENTRYPOINT")?).ok()?;
        argv.into_iter().next()
    }
}

/// The stages of the Dockerfile, at least a build and a runtime stage.
pub fn stages() -> Vec<Stage> {
    let text = read(&workspace().join("Dockerfile"));
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comments and blank lines, also inside a continued instruction.
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut args: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for line in instructions {
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line.as_str(), ""));
        let (instruction, rest) = (instruction.to_ascii_uppercase(), rest.trim().to_string());
        if instruction == "FROM" {
            let mut from = rest.split_whitespace().next().unwrap_or_default().to_string();
            for (name, value) in &args {
                from = from
                    .replace(&format!("${{{name}}}"), value)
                    .replace(&format!("${name}"), value);
            }
            stages.push(Stage {
                from,
                lines: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.lines.push((instruction, rest));
        } else if instruction == "ARG" {
            let (name, value) = rest.split_once('=').unwrap_or((rest.as_str(), ""));
            args.push((name.to_string(), value.trim_matches('"').to_string()));
        }
    }
    assert!(
        stages.len() >= 2,
        "Dockerfile: a build stage and a runtime stage, found {}",
        stages.len()
    );
    stages
}

/// The build: the pinned toolchain, the wasm target, the release binary.
pub fn builds_with_the_pinned_toolchain(stages: &[Stage]) {
    let (builder, build_at) = stages
        .iter()
        .find_map(|s| Some((s, s.run_with(&["cargo build"])?)))
        .expect("Dockerfile: no stage runs `cargo build`");
    let toolchain: toml::Table = read(&workspace().join("rust-toolchain.toml"))
        .parse()
        .expect("rust-toolchain.toml is TOML");
    let channel = toolchain
        .get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(toml::Value::as_str)
        .expect("rust-toolchain.toml has a channel");
    let minor: String = channel.split('.').take(2).collect::<Vec<_>>().join(".");
    let tag = builder.from.strip_prefix("rust:").unwrap_or_else(|| {
        panic!(
            "Dockerfile: the build stage starts from {}, not the official rust image",
            builder.from
        )
    });
    assert!(
        tag.starts_with(&format!("{channel}-")) || tag.starts_with(&format!("{minor}-")) || tag == channel,
        "Dockerfile: the build image rust:{tag} is not rust-toolchain.toml's channel {channel}"
    );
    let build = &builder.lines[build_at].1;
    for flag in ["--release", "-p sluice", "--locked"] {
        assert!(
            build.contains(flag),
            "Dockerfile: `cargo build` without `{flag}`: {build}"
        );
    }
    assert!(
        builder
            .run_with(&["rustup target add", "wasm32-wasip2"])
            .is_some_and(|target_at| target_at < build_at),
        "Dockerfile: `rustup target add wasm32-wasip2` before `cargo build` (proxy/build.rs builds the built-in plugins for it)"
    );
}

fn is_sluice(binary: &str) -> bool {
    Path::new(binary).file_name().is_some_and(|f| f == "sluice")
}

/// The image the manifests run: the sidecars' UID, sluice as entrypoint.
pub fn runs_sluice_as_the_sidecars_uid(stages: &[Stage], uids: &BTreeSet<i64>) {
    assert_eq!(
        uids.len(),
        1,
        "{MANIFESTS}: the sidecars' `proxy_uid`s {uids:?} should be one UID, the image's USER"
    );
    let runtime = stages.last().expect("two stages");
    let user = runtime
        .last("USER")
        .expect("Dockerfile: the runtime stage sets no USER");
    let uid: i64 = user.split(':').next().unwrap_or_default().parse().unwrap_or_else(|e| {
        panic!("Dockerfile: USER {user}: give a numeric UID ({e}), which Kubernetes' runAsNonRoot can verify")
    });
    assert_ne!(uid, 0, "Dockerfile: USER is root");
    assert!(
        uids.contains(&uid),
        "Dockerfile: USER {uid} is not the sidecars' `[sidecar] proxy_uid` {uids:?}"
    );
    let binary = runtime
        .entrypoint()
        .expect("Dockerfile: the runtime stage has no exec-form ENTRYPOINT");
    assert!(
        is_sluice(&binary),
        "Dockerfile: ENTRYPOINT {binary} is not the sluice binary"
    );
    assert!(
        runtime.all("COPY").any(|c| c.contains(&binary)),
        "Dockerfile: nothing is copied to {binary} in the runtime stage"
    );
}

/// The init container's image: iptables and nft beside the same binary.
pub fn has_an_init_image_with_iptables(stages: &[Stage]) {
    assert!(
        stages.iter().any(|s| {
            s.all("RUN").any(|r| r.contains("install") && r.contains("iptables"))
                && s.entrypoint().is_some_and(|b| is_sluice(&b))
        }),
        "Dockerfile: no stage has iptables for `sluice iptables` (the init container)"
    );
}

pub fn leaves_target_out_of_the_context() {
    let ignore = read(&workspace().join(".dockerignore"));
    assert!(
        ignore.lines().any(|l| l.trim().trim_matches('/') == "target"),
        ".dockerignore: leave target/ out of the build context"
    );
}
