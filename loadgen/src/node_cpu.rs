//! The CPU the servers spent during the measured window, when they run on this machine: every
//! benchmark row then carries CPU per operation, the figure that survives a shared, noisy
//! machine better than a rate does.
//!
//! A target is local when its address is a loopback one. Its process is found the way `ss -lp`
//! finds it: the listening socket's inode in `/proc/net/tcp{,6}`, then the process whose
//! `/proc/PID/fd` holds `socket:[inode]`. Its CPU is `utime + stime` of `/proc/PID/stat`, read
//! at the start of the measured window and at its end. Linux only; elsewhere, or for a target on
//! another machine, or without permission to read the process, the row says `null`.

use std::net::{IpAddr, ToSocketAddrs};
use std::time::Instant;

use serde::Serialize;

/// One local server process being measured.
#[derive(Debug, Clone)]
struct Watched {
    endpoint: String,
    pid: u32,
}

/// The processes behind the targets that are local, found once before the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Probe {
    watched: Vec<Watched>,
    /// Targets that are not local or whose process was not found, and why.
    unmeasured: Vec<(String, String)>,
}

/// CPU ticks of each watched process at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    at: Instant,
    ticks: Vec<Option<u64>>,
}

/// One server's CPU over the window.
#[derive(Debug, Serialize)]
pub(crate) struct NodeCpu {
    pub endpoint: String,
    pub pid: u32,
    /// CPU time (user + system) spent in the window, milliseconds.
    pub cpu_ms: f64,
    /// Cores busy on average over the window.
    pub cores: f64,
}

/// The servers' CPU over the measured window; the report's `node_cpu`.
#[derive(Debug, Serialize)]
pub(crate) struct CpuSummary {
    pub nodes: Vec<NodeCpu>,
    /// Summed over the measured servers, per successful request, microseconds.
    pub cpu_us_per_ok: Option<f64>,
    /// Targets that were not measured, and why.
    pub unmeasured: Vec<String>,
}

impl CpuSummary {
    /// Prints the table line: CPU per `unit` (a successful request, a delivery) and each
    /// target's cores, or why nothing was measured.
    pub fn print_line(&self, unit: &str) {
        match self.cpu_us_per_ok {
            Some(us) => {
                let each: Vec<String> =
                    self.nodes.iter().map(|n| format!("{} {:.2} cores", n.endpoint, n.cores)).collect();
                println!("server CPU    {us:.1} us per {unit}, summed ({})", each.join(", "));
            }
            None => println!("server CPU    not measured ({})", self.unmeasured.join("; ")),
        }
    }
}

impl Probe {
    /// Finds the local process behind each endpoint (a URL or `host:port`).
    pub fn discover(endpoints: &[String]) -> Self {
        let mut probe = Probe::default();
        for e in endpoints {
            match local_pid(e) {
                Ok(pid) => probe.watched.push(Watched { endpoint: redact(e), pid }),
                Err(why) => probe.unmeasured.push((redact(e), why)),
            }
        }
        probe
    }

    /// Reads every watched process's CPU ticks at `at` (the opening of a measured window), in a
    /// task of its own so the caller can start its load meanwhile.
    pub fn sample_at(&self, at: Instant) -> tokio::task::JoinHandle<Sample> {
        let probe = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            probe.sample()
        })
    }

    /// Reads every watched process's CPU ticks now.
    pub fn sample(&self) -> Sample {
        Sample { at: Instant::now(), ticks: self.watched.iter().map(|w| cpu_ticks(w.pid)).collect() }
    }

    /// The CPU spent between two samples, per `ok` successful request.
    pub fn summary(&self, from: &Sample, to: &Sample, ok: u64) -> CpuSummary {
        let tick_ms = 1_000.0 / clock_ticks_per_sec();
        let window_s = to.at.saturating_duration_since(from.at).as_secs_f64();
        let mut nodes = Vec::new();
        let mut unmeasured: Vec<String> = self.unmeasured.iter().map(|(e, why)| format!("{e}: {why}")).collect();
        for (i, w) in self.watched.iter().enumerate() {
            match (from.ticks[i], to.ticks[i]) {
                (Some(a), Some(b)) if b >= a => {
                    let cpu_ms = (b - a) as f64 * tick_ms;
                    let cores = if window_s > 0.0 { cpu_ms / 1_000.0 / window_s } else { 0.0 };
                    nodes.push(NodeCpu { endpoint: w.endpoint.clone(), pid: w.pid, cpu_ms, cores });
                }
                _ => unmeasured.push(format!("{}: process {} ended or restarted during the run", w.endpoint, w.pid)),
            }
        }
        let total_ms: f64 = nodes.iter().map(|n| n.cpu_ms).sum();
        let cpu_us_per_ok = (!nodes.is_empty() && ok > 0).then(|| total_ms * 1_000.0 / ok as f64);
        CpuSummary { nodes, cpu_us_per_ok, unmeasured }
    }
}

/// `host:port` of an endpoint: a URL (`http://h:p/x`, `postgres://u:pw@h:p/db`) or `h:p`.
fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let authority = rest.split(['/', '?']).next()?;
    let (host, port) = authority.rsplit_once(':')?;
    Some((host.trim_start_matches('[').trim_end_matches(']').to_string(), port.parse().ok()?))
}

/// A credential in a URL is not printed: `user:secret@` becomes `user:***@`.
fn redact(endpoint: &str) -> String {
    match endpoint.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((cred, tail)) => {
                let user = cred.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{tail}")
            }
            None => endpoint.to_string(),
        },
        None => endpoint.to_string(),
    }
}

fn local_pid(endpoint: &str) -> Result<u32, String> {
    let (host, port) = host_port(endpoint).ok_or("no host:port in the address")?;
    let ips: Vec<IpAddr> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .map(|a| a.ip())
        .collect();
    if ips.is_empty() || !ips.iter().all(|ip| ip.is_loopback()) {
        return Err("not a loopback address (its CPU is not visible from here)".into());
    }
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return Err(format!("no process listens on port {port} here (or /proc is unavailable)"));
    }
    pid_owning(&inodes).ok_or_else(|| format!("the process listening on port {port} is not readable"))
}

/// Inodes of the sockets listening on `port` (any address), from `/proc/net/tcp` and `tcp6`.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue; // 0A: LISTEN
            }
            let local_port = f[1].rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                if let Ok(inode) = f[9].parse::<u64>() {
                    out.push(inode);
                }
            }
        }
    }
    out
}

/// The process holding one of the socket `inodes` among its file descriptors.
fn pid_owning(inodes: &[u64]) -> Option<u32> {
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                if wanted.iter().any(|w| link.as_os_str() == w.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// `utime + stime` of a process, in clock ticks (fields 14 and 15 of `/proc/PID/stat`, counted
/// after the command name, which may itself hold spaces and parentheses).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The kernel's clock ticks per second for `/proc` CPU times (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_to_host_and_port() {
        assert_eq!(host_port("http://127.0.0.1:8080"), Some(("127.0.0.1".into(), 8080)));
        assert_eq!(host_port("http://127.0.0.1:8080/graphql"), Some(("127.0.0.1".into(), 8080)));
        assert_eq!(host_port("postgres://u:pw@localhost:5432/db"), Some(("localhost".into(), 5432)));
        assert_eq!(host_port("[::1]:2379"), Some(("::1".into(), 2379)));
        assert_eq!(host_port("no-port"), None);
        assert_eq!(redact("postgres://u:pw@localhost:5432/db"), "postgres://u:***@localhost:5432/db");
    }

    #[test]
    fn this_process_is_found_behind_its_own_listener_and_its_cpu_moves() {
        // Why: the report's CPU per operation is only as good as finding the right process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let probe = Probe::discover(&[format!("http://127.0.0.1:{port}"), "http://192.0.2.1:80".into()]);
        assert_eq!(probe.watched.len(), 1, "{probe:?}");
        assert_eq!(probe.watched[0].pid, std::process::id());
        assert_eq!(probe.unmeasured.len(), 1, "a non-loopback target is not measured: {probe:?}");
        let before = probe.sample();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed().as_millis() < 200 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let summary = probe.summary(&before, &probe.sample(), 10);
        assert!(summary.nodes[0].cpu_ms >= 50.0, "200 ms of spinning shows as CPU: {summary:?}");
        assert!(summary.cpu_us_per_ok.is_some_and(|us| us >= 5_000.0), "{summary:?}");
    }
}
