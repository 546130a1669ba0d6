//! Kubernetes resource quantities (`250m`, `1.5`, `512Mi`, `1e3`), parsed far
//! enough to check them and to compare a request with its limit.

use std::sync::LazyLock;

use regex::Regex;

/// A number, then a decimal or binary suffix or a decimal exponent; the
/// OpenAPI document carries this very pattern.
pub const QUANTITY_PATTERN: &str =
    r"^\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([numkMGTPE]|[KMGTPE]i|[eE][-+]?[0-9]{1,9})?$";

static QUANTITY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(QUANTITY_PATTERN).expect("the quantity pattern is valid"));

/// The value of a quantity in base units (cores, bytes), as a float: exact
/// enough to order two quantities, which is all depman needs of it.
pub fn parse_quantity(value: &str) -> Result<f64, String> {
    let invalid =
        || format!("`{value}` is not a Kubernetes quantity (examples: `250m`, `2`, `512Mi`, `1G`)");
    let parts = QUANTITY.captures(value).ok_or_else(invalid)?;
    let number: f64 = parts[1].parse().map_err(|_| invalid())?;
    let multiplier = match parts.get(2).map_or("", |suffix| suffix.as_str()) {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            // The pattern leaves at most nine digits: always an i32.
            let power: i32 = exponent[1..].parse().map_err(|_| invalid())?;
            10f64.powi(power)
        }
    };
    Ok(number * multiplier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_suffixes_kubernetes_accepts() {
        let cases = [
            ("1", 1.0),
            ("250m", 0.25),
            ("1.5", 1.5),
            ("+2", 2.0),
            ("512Mi", 512.0 * 1024.0 * 1024.0),
            ("1G", 1e9),
            ("1Ki", 1024.0),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("0", 0.0),
            (".5", 0.5),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_quantity(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_the_rest() {
        for bad in [
            "",
            "m",
            "-1",
            "1.2.3",
            "1KB",
            "1 Gi",
            "abc",
            "1e",
            "1mi",
            "++1",
            ".",
            "1e1234567890",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }
}
