//! Due-time policy: how long after discharge a referral should be accepted and the
//! person first contacted, per priority. Written `asap=4h,urgent=12h,routine=24h`
//! (units `m`, `h` or `d`).

use std::time::Duration;

use careloop_events::Priority;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueTimes {
    pub asap: Duration,
    pub urgent: Duration,
    pub routine: Duration,
}

impl DueTimes {
    pub fn for_priority(&self, priority: Priority) -> Duration {
        match priority {
            Priority::Asap => self.asap,
            Priority::Urgent => self.urgent,
            Priority::Routine => self.routine,
        }
    }
}

impl TryFrom<&str> for DueTimes {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        let (mut asap, mut urgent, mut routine) = (None, None, None);
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, amount) = part
                .split_once('=')
                .ok_or_else(|| format!("expected priority=duration, got {part:?}"))?;
            let d = parse_duration(amount.trim())
                .ok_or_else(|| format!("{amount:?} is not a duration like 24h, 90m or 3d"))?;
            match Priority::parse(key.trim()) {
                Some(Priority::Asap) => asap = Some(d),
                Some(Priority::Urgent) => urgent = Some(d),
                Some(Priority::Routine) => routine = Some(d),
                None => return Err(format!("unknown priority {:?}", key.trim())),
            }
        }
        match (asap, urgent, routine) {
            (Some(asap), Some(urgent), Some(routine)) => Ok(DueTimes {
                asap,
                urgent,
                routine,
            }),
            _ => Err("give all three: asap=..,urgent=..,routine=..".into()),
        }
    }
}

/// `90s`, `30m`, `12h`, `2d`, `7y` (365-day years).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let unit = s.chars().last()?;
    let n = &s[..s.len() - unit.len_utf8()];
    let unit = unit.to_string();
    let unit = unit.as_str();
    let n: u64 = n.parse().ok()?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit_secs).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_form() {
        let d = DueTimes::try_from("asap=24h, urgent=2d,routine=90m").unwrap();
        assert_eq!(d.asap, Duration::from_secs(86_400));
        assert_eq!(d.urgent, Duration::from_secs(2 * 86_400));
        assert_eq!(d.routine, Duration::from_secs(5_400));
        assert!(DueTimes::try_from("asap=24h").is_err());
        assert!(DueTimes::try_from("asap=soon,urgent=1h,routine=1h").is_err());
    }
}
