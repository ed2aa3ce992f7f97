//! Facts about the machine and the process, read from `/proc` (Linux).

/// Peak resident set size of this process in kB (`VmHWM` of
/// `/proc/self/status`); `None` where `/proc` is not available.
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kb(&status, "VmHWM")
}

/// The value in kB of `field` (e.g. `VmHWM`) in a `/proc/<pid>/status` text.
pub fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The CPU model (`model name` of `/proc/cpuinfo`), or `"unknown CPU"`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| parse_cpu_model(&text))
        .unwrap_or_else(|| "unknown CPU".to_string())
}

/// The first `model name` value of a `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// Number of CPUs this process may run on.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let s = "Name:\tx\nVmPeak:\t  2000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_kb(s, "VmHWM"), Some(1234));
        assert_eq!(parse_status_kb(s, "VmSwap"), None);
        assert!(peak_rss_kb().is_some_and(|kb| kb > 0));
    }

    #[test]
    fn parses_cpuinfo() {
        let s = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(s).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model(""), None);
    }
}
