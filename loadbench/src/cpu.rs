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

/// Time stolen from CPU `cpu` so far (the `steal` column of its line in `/proc/stat`): time
/// the hypervisor ran something else while this guest's vCPU wanted to run. A load slot with
/// much of it measured the host's neighbours as well as the server. `None` when the line
/// cannot be read (no such CPU, not Linux).
pub fn steal_time(cpu: usize, tick_hz: f64) -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    steal_of(&stat, cpu, tick_hz)
}

fn steal_of(stat: &str, cpu: usize, tick_hz: f64) -> Option<Duration> {
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    // cpuN user nice system idle iowait irq softirq steal ...
    let ticks: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / tick_hz))
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

    #[test]
    fn reads_one_cpus_steal_column() {
        let stat = "cpu  10 0 20 300 0 0 0 999 0 0\n\
                    cpu0 5 0 10 150 0 0 0 250 0 0\n\
                    cpu1 5 0 10 150 0 0 0 749 0 0\n\
                    cpu10 1 0 1 1 0 0 0 7 0 0\n\
                    intr 1 2 3\n";
        assert_eq!(steal_of(stat, 0, 100.0), Some(Duration::from_millis(2500)));
        assert_eq!(steal_of(stat, 1, 100.0), Some(Duration::from_millis(7490)));
        assert_eq!(steal_of(stat, 10, 100.0), Some(Duration::from_millis(70)));
        assert_eq!(steal_of(stat, 2, 100.0), None);
        assert_eq!(steal_of("cpu0 1 2 3", 0, 100.0), None);
    }
}
