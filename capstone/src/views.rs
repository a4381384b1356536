//! What `inspect` and `ps` show: Docker-shaped JSON and table rows built
//! from berth's records. Pure functions of the record and the current time.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::options::{IpcMode, RestartPolicy};
use crate::state::{Container, Status};

/// Docker's timestamp format, with the zero time for "never".
pub fn timestamp(t: Option<SystemTime>) -> String {
    match t {
        Some(t) => humantime::format_rfc3339_nanos(t).to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

// ANCHOR: human_duration
/// A duration as Docker words it in `ps`: "Less than a second", "3 seconds",
/// "About a minute", "5 minutes", "About an hour", "2 hours", "3 days" …
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (m, h) = (s / 60, (d.as_secs_f64() / 3600.0).round() as u64);
    match () {
        _ if s < 1 => "Less than a second".into(),
        _ if s == 1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 3 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}
// ANCHOR_END: human_duration

fn since(t: Option<SystemTime>, now: SystemTime) -> Duration {
    t.and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

/// The STATUS column of `docker ps`.
pub fn status_text(c: &Container, now: SystemTime) -> String {
    let s = &c.state;
    match s.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let health = match s.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => " (health: starting)",
                Some("healthy") => " (healthy)",
                Some("unhealthy") => " (unhealthy)",
                _ => "",
            };
            format!("Up {}{health}", human_duration(since(s.started_at, now)))
        }
        Status::Paused => format!("Up {} (Paused)", human_duration(since(s.started_at, now))),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            human_duration(since(s.finished_at, now))
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            human_duration(since(s.finished_at, now))
        ),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// The COMMAND column: quoted, and cut to 20 characters unless `full`.
pub fn command_text(c: &Container, full: bool) -> String {
    let mut cmd = std::iter::once(c.path.as_str())
        .chain(c.args.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    if !full && cmd.chars().count() > 20 {
        cmd = cmd.chars().take(19).collect::<String>() + "…";
    }
    format!("\"{cmd}\"")
}

/// One row of `ps`, with the field names `--format` uses.
pub fn ps_row(c: &Container, now: SystemTime, no_trunc: bool) -> Value {
    json!({
        "ID": if no_trunc { c.id.clone() } else { c.short_id().to_string() },
        "Image": c.image,
        "Command": command_text(c, no_trunc),
        "CreatedAt": humantime::format_rfc3339_seconds(c.created).to_string(),
        "RunningFor": format!("{} ago", human_duration(since(Some(c.created), now))),
        "Ports": c.ports.iter().map(crate::network::Binding::describe).collect::<Vec<_>>().join(", "),
        "State": c.state.status.as_str(),
        "Status": status_text(c, now),
        "Names": c.name,
    })
}

/// The header Docker prints for a `ps` field.
pub fn ps_header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        other => other.to_uppercase(),
    }
}

/// Lays out rows in columns separated by at least three spaces, as Docker's
/// tables are.
pub fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

// ANCHOR: inspect
/// The `docker inspect` view of a container: the same field names, so
/// that scripts and `--format` templates written for Docker work.
pub fn inspect(c: &Container, dir: &std::path::Path) -> Value {
    let s = &c.state;
    let o = &c.options;
    let restart_max = match o.restart {
        RestartPolicy::OnFailure(n) => n,
        _ => 0,
    };
    let r = &o.resources;
    json!({
        "Id": c.id,
        "Created": timestamp(Some(c.created)),
        "Path": c.path,
        "Args": c.args,
        "State": {
            "Status": s.status.as_str(),
            "Running": matches!(s.status, Status::Running | Status::Paused),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": timestamp(s.started_at),
            "FinishedAt": timestamp(s.finished_at),
            "Health": s.health.as_ref().map(|h| json!({
                "Status": h.status,
                "FailingStreak": h.failing_streak,
                "Log": h.log.iter().map(|p| json!({
                    "Start": timestamp(Some(p.start)),
                    "End": timestamp(Some(p.end)),
                    "ExitCode": p.exit_code,
                    "Output": p.output,
                })).collect::<Vec<_>>(),
            })),
        },
        "Image": c.image_id,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": dir.join("container.log"),
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": c.storage.driver.as_str(),
        "GraphDriver": graph_driver(c, dir),
        "Mounts": mounts(c, dir),
        "NetworkSettings": crate::network::settings(c),
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": o.network.name(),
            "IpcMode": match &o.ipc { IpcMode::Private => "private".to_string(), IpcMode::Host => "host".to_string(), IpcMode::Container(n) => format!("container:{n}") },
            "RestartPolicy": {"Name": o.restart.to_string(), "MaximumRetryCount": restart_max},
            "AutoRemove": o.auto_remove,
            "ReadonlyRootfs": o.read_only,
            "Init": o.init,
            "Privileged": o.privileged,
            "CapAdd": o.cap_add,
            "CapDrop": o.cap_drop,
            "SecurityOpt": if o.no_new_privileges { vec!["no-new-privileges"] } else { vec![] },
            "UsernsMode": if o.rootless || !o.uid_maps.is_empty() { "private" } else { "" },
            "Memory": r.memory.unwrap_or(0),
            // Docker shows the swap it applied: twice the memory by default.
            "MemorySwap": match (r.memory, r.memory_swap) {
                (_, Some(s)) => s,
                (Some(m), None) => 2 * m as i64,
                (None, None) => 0,
            },
            "NanoCpus": match (r.cpu_quota, r.cpu_period) {
                (Some(q), Some(p)) if p > 0 => q * 1_000_000_000 / p,
                _ => 0,
            },
            "CpuShares": r.cpu_shares.unwrap_or(0),
            "CpusetCpus": r.cpuset_cpus.clone().unwrap_or_default(),
            "PidsLimit": r.pids,
            "Devices": r.device_nodes.iter().zip(&r.devices).map(|(n, rule)| json!({
                "PathOnHost": n.host,
                "PathInContainer": n.path,
                "CgroupPermissions": rule.access,
            })).collect::<Vec<_>>(),
            "CgroupParent": if o.rootless { "" } else { crate::cgroup::PARENT },
        },
        "Config": {
            "Hostname": o.hostname,
            "User": o.user,
            "Tty": o.tty,
            "OpenStdin": o.interactive,
            "Env": c.env,
            "Cmd": std::iter::once(c.path.clone()).chain(c.args.iter().cloned()).collect::<Vec<_>>(),
            "Entrypoint": o.entrypoint,
            "Image": c.image,
            "WorkingDir": o.workdir,
            "StopSignal": o.stop_signal,
            "StopTimeout": o.stop_timeout,
        },
    })
}
// ANCHOR_END: inspect

/// Docker's `GraphDriver`: the driver and, for overlay, its directories
/// (`LowerDir` top-most first, joined by `:` as overlayfs takes them).
fn graph_driver(c: &Container, dir: &std::path::Path) -> serde_json::Value {
    let p = crate::storage::paths(dir);
    match c.storage.driver {
        crate::storage::Driver::Overlay => {
            let lowers = crate::image::ImageStore::open(
                dir.parent().and_then(|d| d.parent()).unwrap_or(dir),
            )
            .and_then(|images| crate::storage::lowers(&images, &c.storage, dir))
            .map(|l| {
                l.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .unwrap_or_default();
            serde_json::json!({"Name": "overlay", "Data": {
                "LowerDir": lowers,
                "UpperDir": p.upper,
                "WorkDir": p.work,
                "MergedDir": p.rootfs,
            }})
        }
        crate::storage::Driver::Vfs => {
            serde_json::json!({"Name": "vfs", "Data": {"MergedDir": p.rootfs}})
        }
    }
}

/// Docker's `Mounts`: one entry per bind mount, volume and tmpfs.
fn mounts(c: &Container, dir: &std::path::Path) -> Value {
    use overlay::volume::VolumeSource;
    let volumes = dir
        .parent()
        .and_then(|d| d.parent())
        .map(|root| root.join("volumes"))
        .unwrap_or_default();
    let list: Vec<Value> = c
        .options
        .mounts
        .iter()
        .map(|m| {
            let (kind, name, source) = match &m.source {
                VolumeSource::Bind(p) => ("bind", None, p.display().to_string()),
                VolumeSource::Named { name, .. } => (
                    "volume",
                    Some(name.clone()),
                    volumes.join(name).join("_data").display().to_string(),
                ),
                VolumeSource::Tmpfs { .. } => ("tmpfs", None, String::new()),
            };
            let mut v = serde_json::json!({
                "Type": kind,
                "Source": source,
                "Destination": m.target,
                "Mode": if m.readonly { "ro" } else { "" },
                "RW": !m.readonly,
                "Propagation": if kind == "bind" { "rprivate" } else { "" },
            });
            if let Some(name) = name {
                v["Name"] = Value::String(name);
                v["Driver"] = Value::String("local".into());
            }
            v
        })
        .collect();
    Value::Array(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_dockers() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (119, "About a minute"),
            (120, "2 minutes"),
            (3600, "About an hour"),
            (3 * 3600, "3 hours"),
            (3 * 86400, "3 days"),
            (20 * 86400, "2 weeks"),
            (100 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
        }
    }

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["CONTAINER ID".to_string(), "NAMES".to_string()],
            vec!["abc".to_string(), "web".to_string()],
        ];
        assert_eq!(columns(&rows), "CONTAINER ID   NAMES\nabc            web\n");
    }
}
