//! `berth stats`: each container's CPU, memory and process count, read from
//! its cgroup (lab 02), refreshed every second or printed once.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Result;
use cgroups::{CgroupManager, Stats};
use serde_json::{Value, json};

use crate::state::{Container, Store};
use crate::template::Template;

/// What `berth stats` was asked.
pub struct Options {
    pub all: bool,
    pub stream: bool,
    pub no_trunc: bool,
    pub format: Option<String>,
    pub containers: Vec<String>,
}

/// How long the first reading is compared over (CPU % is a rate).
const FIRST_INTERVAL: Duration = Duration::from_millis(500);
const REFRESH: Duration = Duration::from_secs(1);

/// Sizes as Docker prints them: binary units, four significant digits
/// (`1.523MiB`, `7.629GiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value >= 1000.0 {
        0
    } else if value >= 100.0 {
        1
    } else if value >= 10.0 {
        2
    } else {
        3
    };
    let mut text = format!("{value:.digits$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text}{}", UNITS[unit])
}

/// One row of the table, with Docker's field names for `--format`.
pub fn row(
    c: &Container,
    before: &Stats,
    after: &Stats,
    elapsed: Duration,
    no_trunc: bool,
) -> Value {
    let limit = after
        .memory_limit
        .unwrap_or_else(crate::cgroup::host_memory)
        .max(1);
    let cpu = cgroups::stats::cpu_percent(before, after, elapsed.as_nanos() as u64);
    let mem_percent = after.memory_usage as f64 / limit as f64 * 100.0;
    json!({
        "ID": if no_trunc { c.id.as_str() } else { c.short_id() },
        "Container": if no_trunc { c.id.as_str() } else { c.short_id() },
        "Name": c.name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes(after.memory_usage), bytes(limit)),
        "MemPerc": format!("{mem_percent:.2}%"),
        "PIDs": after.pids_current.to_string(),
        "NetIO": "--",
        "BlockIO": "--",
    })
}

fn header(field: &str) -> String {
    match field {
        "ID" | "Container" => "CONTAINER ID",
        "Name" => "NAME",
        "CPUPerc" => "CPU %",
        "MemUsage" => "MEM USAGE / LIMIT",
        "MemPerc" => "MEM %",
        "PIDs" => "PIDS",
        "NetIO" => "NET I/O",
        "BlockIO" => "BLOCK I/O",
        other => other,
    }
    .to_string()
}

/// Reads a container's counters; a stopped container reads as zeros.
fn read(c: &Container) -> Stats {
    if !c.state.status.is_active() {
        return Stats::default();
    }
    crate::cgroup::manager(&c.id, c.options.rootless)
        .ok()
        .flatten()
        .and_then(|m| m.stats().ok())
        .unwrap_or_default()
}

fn select(store: &Store, opts: &Options) -> Result<Vec<Container>> {
    if opts.containers.is_empty() {
        return Ok(store
            .list()?
            .into_iter()
            .filter(|c| opts.all || c.state.status.is_active())
            .collect());
    }
    opts.containers.iter().map(|n| store.find(n)).collect()
}

fn render(rows: &[Value], format: Option<&str>) -> Result<String> {
    let mut out = String::new();
    match format {
        Some("json") => {
            for r in rows {
                out.push_str(&serde_json::to_string(r)?);
                out.push('\n');
            }
        }
        Some(f) => {
            let t = Template::parse(f)?;
            let split = |l: String| l.split('\t').map(str::to_string).collect::<Vec<_>>();
            if t.table {
                let mut table = vec![split(t.header(&header))];
                for r in rows {
                    table.push(split(t.render(r)?));
                }
                out.push_str(&crate::views::columns(&table));
            } else {
                for r in rows {
                    out.push_str(&t.render(r)?);
                    out.push('\n');
                }
            }
        }
        None => {
            let fields = ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "PIDs"];
            let mut table = vec![fields.iter().map(|f| header(f)).collect::<Vec<_>>()];
            for r in rows {
                table.push(
                    fields
                        .iter()
                        .map(|f| crate::template::go_string(&r[*f]))
                        .collect(),
                );
            }
            out.push_str(&crate::views::columns(&table));
        }
    }
    Ok(out)
}

// ANCHOR: stats
/// Prints the table: once (`--no-stream`) after comparing two readings half
/// a second apart, or refreshed every second until interrupted.
pub fn run(store: &Store, opts: &Options) -> Result<()> {
    let mut containers = select(store, opts)?;
    let mut before: Vec<Stats> = containers.iter().map(read).collect();
    let mut taken = Instant::now();
    std::thread::sleep(FIRST_INTERVAL);
    loop {
        let after: Vec<Stats> = containers.iter().map(read).collect();
        let elapsed = taken.elapsed();
        taken = Instant::now();
        let rows: Vec<Value> = containers
            .iter()
            .zip(before.iter().zip(&after))
            .map(|(c, (b, a))| row(c, b, a, elapsed, opts.no_trunc))
            .collect();
        let text = render(&rows, opts.format.as_deref())?;
        let mut out = std::io::stdout().lock();
        if opts.stream {
            // Clear the screen and go home, like `top`.
            write!(out, "\x1b[2J\x1b[H")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        if !opts.stream {
            return Ok(());
        }
        drop(out);
        std::thread::sleep(REFRESH);
        // Containers come and go while we watch.
        if opts.containers.is_empty() {
            let now = select(store, opts)?;
            before = now
                .iter()
                .map(|c| {
                    containers
                        .iter()
                        .position(|o| o.id == c.id)
                        .map_or_else(|| read(c), |i| after[i].clone())
                })
                .collect();
            containers = now;
        } else {
            containers = select(store, opts)?;
            before = after;
        }
    }
}
// ANCHOR_END: stats

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1536), "1.5KiB");
        assert_eq!(bytes(1_597_440), "1.523MiB");
        assert_eq!(bytes(64 << 20), "64MiB");
        assert_eq!(bytes(8_192_000_000), "7.629GiB");
        assert_eq!(bytes(1023), "1023B");
    }
}
