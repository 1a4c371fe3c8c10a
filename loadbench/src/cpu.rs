//! CPU time of processes, from `/proc/<pid>/stat`: what the load bench charges each server
//! and each generator.

use std::time::Duration;

/// CPU time (user + system) of process `pid` (or `"self"`) so far.
pub fn cpu_time(pid: &str, tick_hz: f64) -> Duration {
    // utime and stime are fields 14 and 15.
    stat_pair(&read_stat(pid), 14, tick_hz)
}

/// CPU time of this process's waited-for children (cutime + cstime).
pub fn children_cpu_time(tick_hz: f64) -> Duration {
    // cutime and cstime are fields 16 and 17.
    stat_pair(&read_stat("self"), 16, tick_hz)
}

fn read_stat(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default()
}

/// The sum of fields `field` and `field + 1` (numbered from 1, as proc(5) does) of a stat
/// line, in seconds; zero for what cannot be read.
fn stat_pair(stat: &str, field: usize, tick_hz: f64) -> Duration {
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_secs_f64((ticks(field) + ticks(field + 1)) as f64 / tick_hz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_time_fields_past_a_command_name_with_spaces() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime ...
        let stat = "42 (load (x) y) S 1 42 42 0 -1 4194560 10 0 0 0 150 50 7 3 20 0 1 0";
        assert_eq!(stat_pair(stat, 14, 100.0), Duration::from_secs(2));
        assert_eq!(stat_pair(stat, 16, 100.0), Duration::from_millis(100));
        assert_eq!(stat_pair("", 14, 100.0), Duration::ZERO);
    }
}
