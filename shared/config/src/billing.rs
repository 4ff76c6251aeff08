//! The service codes billable contacts are documented under, and how a contact's
//! minutes become billed units.
//!
//! `CARELOOP_SERVICE_CODES` lists them, separated by `;`, each
//! `CODE:UNIT_MINUTES:ROUNDING:MODIFIER,MODIFIER,…`. The default is Medicaid's peer
//! support code `H0038:15:eight_minute:HE,HQ,GT,95,U1,U2,U3,U4` (15-minute units, the
//! 8-minute rule, and the modifiers most state plans use; set yours from the state's
//! billing manual).

use crate::ConfigError;

/// The default table: H0038, peer support services, per 15 minutes.
pub const DEFAULT_SERVICE_CODES: &str = "H0038:15:eight_minute:HE,HQ,GT,95,U1,U2,U3,U4";

/// How the minutes of one contact become units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// A unit counts once more than half of it is spent: the 8-minute rule for
    /// 15-minute units (8–22 minutes are 1 unit, 23–37 are 2, …; under 8, none).
    EightMinute,
    /// Only whole units count (29 minutes are 1 unit of 15).
    WholeUnits,
    /// Any part of a unit counts as a unit (16 minutes are 2 units of 15).
    AnyPart,
}

impl Rounding {
    /// The units `minutes` make with units of `unit_minutes`.
    pub fn units(self, minutes: u32, unit_minutes: u32) -> u32 {
        let u = unit_minutes.max(1);
        match self {
            Rounding::EightMinute => {
                // More than half a unit: 8 of 15, 31 of 60.
                let threshold = u / 2 + 1;
                (minutes + u - threshold) / u
            }
            Rounding::WholeUnits => minutes / u,
            Rounding::AnyPart => minutes.div_ceil(u),
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "eight_minute" => Some(Rounding::EightMinute),
            "whole_units" => Some(Rounding::WholeUnits),
            "any_part" => Some(Rounding::AnyPart),
            _ => None,
        }
    }
}

/// One billable service code of the organisation's table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceCode {
    /// The HCPCS code (`H0038`).
    pub code: String,
    pub unit_minutes: u32,
    pub rounding: Rounding,
    /// The modifiers a contact may carry under this code.
    pub modifiers: Vec<String>,
}

/// Reads `CARELOOP_SERVICE_CODES`.
pub(crate) fn service_codes(
    get: &impl Fn(&str, &str) -> String,
) -> Result<Vec<ServiceCode>, ConfigError> {
    let raw = get("CARELOOP_SERVICE_CODES", DEFAULT_SERVICE_CODES);
    let bad = |problem: String| ConfigError {
        variable: "CARELOOP_SERVICE_CODES",
        problem,
    };
    let mut codes: Vec<ServiceCode> = Vec::new();
    for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let [code, unit, rounding, modifiers] = parts[..] else {
            return Err(bad(format!(
                "each code is CODE:UNIT_MINUTES:ROUNDING:MODIFIERS, got {entry:?}"
            )));
        };
        let valid_code =
            |c: &str| (2..=7).contains(&c.len()) && c.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid_code(code) {
            return Err(bad(format!("{code:?} is not a service code")));
        }
        let unit_minutes = unit
            .parse::<u32>()
            .ok()
            .filter(|u| (1..=240).contains(u))
            .ok_or_else(|| {
                bad(format!(
                    "unit minutes of {code} must be 1 to 240, got {unit:?}"
                ))
            })?;
        let rounding = Rounding::parse(rounding).ok_or_else(|| {
            bad(format!(
                "rounding of {code} is eight_minute, whole_units or any_part, got {rounding:?}"
            ))
        })?;
        let modifiers: Vec<String> = modifiers
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(m) = modifiers
            .iter()
            .find(|m| m.len() != 2 || !m.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(bad(format!(
                "modifier {m:?} of {code} is not two letters or digits"
            )));
        }
        if codes.iter().any(|c| c.code == code) {
            return Err(bad(format!("{code} is listed twice")));
        }
        codes.push(ServiceCode {
            code: code.to_string(),
            unit_minutes,
            rounding,
            modifiers,
        });
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: &str) -> Result<Vec<ServiceCode>, ConfigError> {
        service_codes(&|name: &str, default: &str| {
            if name == "CARELOOP_SERVICE_CODES" && !value.is_empty() {
                value.to_string()
            } else {
                default.to_string()
            }
        })
    }

    #[test]
    fn the_eight_minute_rule_counts_a_unit_from_more_than_half_of_it() {
        let r = Rounding::EightMinute;
        let units: Vec<u32> = [0, 7, 8, 22, 23, 37, 38, 52, 53, 60]
            .iter()
            .map(|m| r.units(*m, 15))
            .collect();
        assert_eq!(units, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]);
        // An hour unit needs more than 30 minutes.
        assert_eq!((r.units(30, 60), r.units(31, 60)), (0, 1));
    }

    #[test]
    fn whole_units_and_any_part_round_down_and_up() {
        assert_eq!(Rounding::WholeUnits.units(29, 15), 1);
        assert_eq!(Rounding::WholeUnits.units(30, 15), 2);
        assert_eq!(Rounding::AnyPart.units(16, 15), 2);
        assert_eq!(Rounding::AnyPart.units(0, 15), 0);
    }

    #[test]
    fn the_default_table_is_h0038_per_15_minutes_with_the_8_minute_rule() {
        let codes = read("").unwrap();
        assert_eq!(codes.len(), 1);
        assert_eq!(codes[0].code, "H0038");
        assert_eq!(codes[0].unit_minutes, 15);
        assert_eq!(codes[0].rounding, Rounding::EightMinute);
        assert!(codes[0].modifiers.contains(&"HQ".to_string()));
    }

    #[test]
    fn a_table_is_read_and_a_bad_one_names_what_is_wrong() {
        let codes = read("H0038:15:eight_minute:HQ; H2015:15:whole_units:").unwrap();
        assert_eq!(codes[1].code, "H2015");
        assert!(codes[1].modifiers.is_empty());
        for (bad, says) in [
            ("H0038:15:eight_minute", "CODE:UNIT_MINUTES"),
            ("H0038:0:eight_minute:", "1 to 240"),
            ("H0038:15:nearest:", "rounding"),
            ("H0038:15:eight_minute:HQQ", "modifier"),
            ("H0038:15:any_part:;H0038:15:any_part:", "twice"),
        ] {
            let e = read(bad).unwrap_err();
            assert_eq!(e.variable, "CARELOOP_SERVICE_CODES");
            assert!(e.problem.contains(says), "{bad}: {}", e.problem);
        }
    }
}
