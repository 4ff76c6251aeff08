//! How long people's details are kept.

use std::time::Duration;

use crate::{ConfigError, parse_duration};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSettings {
    /// `CARELOOP_RETENTION`: a person is erased this long after their last activity
    /// (`2555d`, `7y` as 365-day years; `h`, `m`, `s` for tests). Unset or `off`: never
    /// (the default; set it to the state's limit).
    pub period: Option<Duration>,
    /// `CARELOOP_RETENTION_SWEEP_SECS`: how often people past the period are looked
    /// for (default 3600).
    pub sweep: Duration,
}

pub(crate) fn retention_settings(
    get: &impl Fn(&str, &str) -> String,
) -> Result<RetentionSettings, ConfigError> {
    let raw = get("CARELOOP_RETENTION", "off");
    let period = match raw.trim() {
        "" | "off" => None,
        other => Some(
            parse_duration(other)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| ConfigError {
                    variable: "CARELOOP_RETENTION",
                    problem: format!(
                        "must be off or a period such as 7y, 2555d or 12h, got {raw:?}"
                    ),
                })?,
        ),
    };
    let raw = get("CARELOOP_RETENTION_SWEEP_SECS", "3600");
    let sweep = raw
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=86_400).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| ConfigError {
            variable: "CARELOOP_RETENTION_SWEEP_SECS",
            problem: format!("must be seconds between 1 and 86400, got {raw:?}"),
        })?;
    Ok(RetentionSettings { period, sweep })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(pairs: &[(&str, &str)]) -> Result<RetentionSettings, ConfigError> {
        retention_settings(&|name: &str, default: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
                .unwrap_or_else(|| default.to_string())
        })
    }

    #[test]
    fn retention_is_off_unless_a_period_is_given() {
        assert_eq!(read(&[]).unwrap().period, None);
        let seven = read(&[("CARELOOP_RETENTION", "7y")]).unwrap();
        assert_eq!(seven.period, Some(Duration::from_secs(7 * 365 * 86_400)));
        assert_eq!(seven.sweep, Duration::from_secs(3600));
        for bad in ["7", "0d", "-1d", "1w"] {
            let err = read(&[("CARELOOP_RETENTION", bad)]).unwrap_err();
            assert_eq!(err.variable, "CARELOOP_RETENTION", "{bad:?}");
        }
    }
}
