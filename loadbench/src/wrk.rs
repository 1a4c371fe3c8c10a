//! wrk as the load generator (`ZSP_LOAD_GEN=wrk`), for a second opinion on the built-in one.
//!
//! The issue's reference figures were taken with wrk, so this runs the same servers, rounds and
//! CPU accounting with wrk in place of the built-in generator. wrk inherits the generator's CPU
//! pinning and runs one thread (`-t1`) with the same number of keep-alive connections.
//!
//! A variant that sends the same request every time gets its `Authorization` header through
//! `-H` and no script, so wrk builds the request once, as in the reference set-up. A variant
//! that needs a fresh request every time ((6) single-use tokens, (13) DPoP proofs) gets a Lua
//! script that hands out the pool's requests in order; once the pool is used up it resends the
//! last one, which the server refuses, so the round is flagged instead of quietly replaying.

use std::process::Command;
use std::time::Duration;

pub const SCRIPT: &str = r#"-- zsp load bench: send the requests in the file named by the first argument, in order.
local reqs, n, i = {}, 0, 0
function init(args)
  local f = assert(io.open(args[1], "rb"))
  local data = f:read("*a")
  f:close()
  for r in string.gmatch(data, "(.-\r\n\r\n)") do
    n = n + 1
    reqs[n] = r
  end
end
function request()
  if i < n then i = i + 1 end
  return reqs[i]
end
"#;

/// wrk's version line, or `None` when wrk is not on PATH.
pub fn version() -> Option<String> {
    // wrk prints its version and usage to stdout and exits non-zero when given `-v` alone.
    let out = Command::new("wrk").arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find(|l| l.starts_with("wrk "))
        // "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
        .map(|l| l.split(" Copyright").next().unwrap_or(l).trim().to_owned())
}

/// The value of the `Authorization` header in `request`, if it has one.
pub fn authorization(request: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(request).ok()?;
    text.split("\r\n")
        .find_map(|line| line.strip_prefix("Authorization: "))
        .map(str::to_owned)
}

/// What the bench takes from wrk's `--latency` report.
#[derive(Debug, PartialEq)]
pub struct Report {
    pub requests: u64,
    pub duration: Duration,
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Report {
    pub fn parse(text: &str) -> Option<Report> {
        let mut requests_line = None;
        let mut p50 = None;
        let mut p99 = None;
        let mut non_2xx = 0;
        let mut socket_errors = 0;
        for line in text.lines().map(str::trim) {
            if let Some(v) = line.strip_prefix("50%") {
                p50 = micros(v.trim());
            } else if let Some(v) = line.strip_prefix("99%") {
                p99 = micros(v.trim());
            } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
                non_2xx = v.trim().parse().ok()?;
            } else if let Some(v) = line.strip_prefix("Socket errors:") {
                // "connect 0, read 0, write 0, timeout 0"
                socket_errors = v
                    .split(',')
                    .filter_map(|kv| kv.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum();
            } else if line.contains(" requests in ") {
                requests_line = Some(line);
            }
        }
        // "318383 requests in 3.00s, 38.56MB read"
        let line = requests_line?;
        let (count, rest) = line.split_once(" requests in ")?;
        let dur = rest.split(',').next()?.trim();
        Some(Report {
            requests: count.trim().parse().ok()?,
            duration: Duration::from_secs_f64(micros(dur)? / 1e6),
            non_2xx,
            socket_errors,
            p50_us: p50?,
            p99_us: p99?,
        })
    }
}

/// A wrk duration ("275.00us", "1.23ms", "3.00s", "1.50m") in microseconds.
fn micros(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale = match unit.trim() {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(n * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let text = "Running 3s test @ http://127.0.0.1:40000/hello
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   301.12us   40.10us   2.10ms   90.00%
    Req/Sec   106.2k     2.1k    110.0k    70.00%
  Latency Distribution
     50%  290.00us
     75%  310.00us
     90%  340.00us
     99%    1.02ms
  318383 requests in 3.00s, 38.56MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec: 106127.85
Transfer/sec:     12.85MB
";
        let r = Report::parse(text).expect("parses");
        assert_eq!(r.requests, 318_383);
        assert_eq!(r.duration, Duration::from_secs(3));
        assert_eq!(r.non_2xx, 5);
        assert_eq!(r.socket_errors, 3);
        assert!((r.p50_us - 290.0).abs() < 1e-9);
        assert!((r.p99_us - 1020.0).abs() < 1e-9);
        assert_eq!(Report::parse("Running 3s test\n"), None);
    }

    #[test]
    fn finds_the_authorization_header() {
        let req = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer abc\r\n\r\n";
        assert_eq!(authorization(req).as_deref(), Some("Bearer abc"));
        assert_eq!(
            authorization(b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            None
        );
    }
}
