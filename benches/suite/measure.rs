//! Timing a command, reading its peak memory, and counting the requests the registries saw meanwhile, by
//! method and kind of path, from the latency proxies' logs.

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::latency_proxy::{LatencyProxy, LoggedRequest};

/// The registries of one scene behind their proxies: staging and public, and the registries' processes.
pub struct Network<'a> {
    pub staging: &'a LatencyProxy,
    pub public: &'a LatencyProxy,
    pub registry_processes: Vec<u32>,
}

/// Where both logs and the CPU clocks stood before something ran.
#[derive(Clone, Copy)]
pub struct Mark {
    staging: (usize, u64, u64),
    public: (usize, u64, u64),
    registries_cpu: f64,
    proxies_cpu: f64,
}

/// The requests between a mark and now.
#[derive(Debug, Clone, Default)]
pub struct Requests {
    pub total: usize,
    /// `staging GET manifest@digest` → count.
    pub by_kind: BTreeMap<String, usize>,
    /// Connections opened (each costs a handshake round trip), TLS probes included.
    pub connections: u64,
    /// Connections that opened with a TLS ClientHello: a client trying HTTPS before plain HTTP.
    pub tls_probes: u64,
    /// The registries' own time over all requests (see `LoggedRequest::registry_time`).
    pub registry_seconds: f64,
    /// Over all requests, the registry's time plus the round trip: how long the client waited on each at least.
    pub waited_seconds: f64,
    /// CPU time of the registry processes meanwhile.
    pub registries_cpu_seconds: f64,
    /// CPU time of this process meanwhile: the proxies, and the harness (idle while a step runs).
    pub proxies_cpu_seconds: f64,
}

impl Requests {
    /// The registries' mean time per request, in milliseconds.
    pub fn registry_ms_each(&self) -> f64 {
        self.registry_seconds * 1e3 / self.total.max(1) as f64
    }
}

impl Network<'_> {
    pub fn mark(&self) -> Mark {
        Mark {
            staging: mark_of(self.staging),
            public: mark_of(self.public),
            registries_cpu: self
                .registry_processes
                .iter()
                .map(|process| cpu_seconds(&process.to_string()))
                .sum(),
            proxies_cpu: cpu_seconds("self"),
        }
    }

    pub fn since(&self, mark: Mark) -> Requests {
        let mut requests = Requests::default();
        for (role, proxy, (from, connections, tls_probes)) in [
            ("staging", self.staging, mark.staging),
            ("public", self.public, mark.public),
        ] {
            for request in proxy.requests_since(from) {
                requests.total += 1;
                let registry = request.registry_time.map_or(0.0, |time| time.as_secs_f64());
                requests.registry_seconds += registry;
                requests.waited_seconds += registry + 2.0 * proxy.delay().as_secs_f64();
                *requests
                    .by_kind
                    .entry(format!("{role} {} {}", request.method, kind(&request)))
                    .or_default() += 1;
            }
            requests.connections += proxy.connections() - connections;
            requests.tls_probes += proxy.tls_probes() - tls_probes;
        }
        requests.registries_cpu_seconds = self.mark().registries_cpu - mark.registries_cpu;
        requests.proxies_cpu_seconds = cpu_seconds("self") - mark.proxies_cpu;
        requests
    }
}

/// User and system CPU time of a process (`self` or a pid) so far, from `/proc/<process>/stat`.
fn cpu_seconds(process: &str) -> f64 {
    /// The unit of `/proc` CPU times (USER_HZ), 100 on Linux.
    const TICKS_PER_SECOND: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{process}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces: state is the first, utime
    // and stime the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|field| field.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// The processes whose command line names `config` (a registry's config file).
pub fn processes_serving(config: &std::path::Path) -> Vec<u32> {
    let wanted = config.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let command_line = std::fs::read(entry.path().join("cmdline")).ok()?;
            command_line
                .split(|byte| *byte == 0)
                .any(|argument| argument == wanted)
                .then_some(pid)
        })
        .collect()
}

fn mark_of(proxy: &LatencyProxy) -> (usize, u64, u64) {
    (
        proxy.request_mark(),
        proxy.connections(),
        proxy.tls_probes(),
    )
}

/// What a request is about, from its path: `ping`, `manifest@digest`, `manifest:tag`, `manifest:.sig`,
/// `blob`, `upload`, `tags/list`, `referrers`; with ` (404)` and the like for answers other than 2xx.
pub fn kind(request: &LoggedRequest) -> String {
    let path = request.path.split('?').next().unwrap_or_default();
    let kind = if path == "/v2/" || path == "/v2" {
        "ping".to_owned()
    } else if let Some((_, reference)) = path.rsplit_once("/manifests/") {
        if reference.starts_with("sha256:") {
            "manifest@digest".to_owned()
        } else if reference.ends_with(".sig") {
            "manifest:.sig".to_owned()
        } else {
            "manifest:tag".to_owned()
        }
    } else if path.contains("/blobs/uploads") {
        "upload".to_owned()
    } else if path.contains("/blobs/") {
        "blob".to_owned()
    } else if path.ends_with("/tags/list") {
        "tags/list".to_owned()
    } else if path.contains("/referrers/") {
        "referrers".to_owned()
    } else {
        format!("other {path}")
    };
    match request.status {
        Some(status) if (200..300).contains(&status) => kind,
        Some(status) => format!("{kind} ({status})"),
        None => format!("{kind} (no answer)"),
    }
}

/// What one process used, as GNU time reports it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Maximum resident set size.
    pub peak_kib: u64,
    /// User and system CPU time.
    pub cpu_seconds: f64,
}

/// One measurement: wall time, what the registries saw, the peak resident memory of the process (the largest
/// of several processes for a loop), its CPU time (summed over a loop's processes), and the request count the
/// process logged, if it logs one.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub seconds: f64,
    pub requests: Requests,
    pub peak_kib: Option<u64>,
    pub cpu_seconds: f64,
    pub logged_requests: Option<u64>,
    /// Processes run (a loop runs many).
    pub processes: usize,
    /// The part of the workload a loop ran over, to scale its time by: 1.0 for all of it.
    pub fraction: f64,
    /// Seconds for the whole workload where linear scaling is wrong (one process over part of the workload).
    pub extrapolated: Option<f64>,
}

impl Sample {
    /// Seconds for the whole workload: a loop over a part of it scales linearly, as a shell loop does.
    pub fn scaled_seconds(&self) -> f64 {
        self.extrapolated.unwrap_or(self.seconds / self.fraction)
    }

    /// Requests waiting on the network or a registry at an average moment: how much the client overlaps them.
    pub fn mean_in_flight(&self) -> f64 {
        self.requests.waited_seconds / self.seconds
    }
}

/// Runs `command` under GNU time; panics with its stderr when it fails. Returns its output (the time line taken
/// out of stderr) and what it used.
pub fn run_timed(command: &Command) -> (Output, Usage) {
    const MARK: &str = "bench-usage ";
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", &format!("{MARK}%M %U %S")])
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(name, value),
            None => timed.env_remove(name),
        };
    }
    if let Some(directory) = command.get_current_dir() {
        timed.current_dir(directory);
    }
    let mut output = timed
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let (rest, usage) = match stderr.rfind(MARK) {
        Some(at) => {
            let numbers: Vec<f64> = stderr[at + MARK.len()..]
                .split_whitespace()
                .filter_map(|number| number.parse().ok())
                .collect();
            let usage = match numbers[..] {
                [peak, user, system] => Usage {
                    peak_kib: peak as u64,
                    cpu_seconds: user + system,
                },
                _ => Usage::default(),
            };
            (stderr[..at].to_owned(), usage)
        }
        None => (stderr.clone(), Usage::default()),
    };
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{rest}",
        output.status
    );
    output.stderr = rest.into_bytes();
    (output, usage)
}

/// Times `work` (which runs processes and returns what each used) and counts the requests it made.
pub fn measure(network: &Network<'_>, fraction: f64, work: impl FnOnce() -> Vec<Usage>) -> Sample {
    let mark = network.mark();
    let started = Instant::now();
    let usages = work();
    let seconds = started.elapsed().as_secs_f64();
    Sample {
        seconds,
        requests: network.since(mark),
        peak_kib: usages.iter().map(|usage| usage.peak_kib).max(),
        cpu_seconds: usages.iter().map(|usage| usage.cpu_seconds).sum(),
        logged_requests: None,
        processes: usages.len(),
        fraction,
        extrapolated: None,
    }
}

/// The `N HTTP requests` imagepipe writes in a stage's last line.
pub fn logged_request_count(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|line| {
        let before = line.strip_suffix(" HTTP requests")?;
        before.rsplit(' ').next()?.parse().ok()
    })
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        length if length % 2 == 1 => values[length / 2],
        length => (values[length / 2 - 1] + values[length / 2]) / 2.0,
    }
}

/// `GET /v2/` of `host` on a new connection and then on the same connection, as measured.
pub fn calibrate(host: &str) -> (Duration, Duration) {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let started = Instant::now();
    let stream = std::net::TcpStream::connect(host).expect("connects");
    let mut reader = BufReader::new(stream.try_clone().expect("clones"));
    let mut request = |stream: &std::net::TcpStream| {
        let started = Instant::now();
        (&*stream)
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: bench\r\n\r\n")
            .expect("writes");
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("reads");
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("reads the body");
        started.elapsed()
    };
    let _ = request(&stream);
    let first = started.elapsed();
    let again = request(&stream);
    (first, again)
}
