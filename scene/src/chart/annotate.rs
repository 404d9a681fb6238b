//! What the text keys add to a chart, worked out before anything is drawn: the value axis's
//! round tick values (`axis`) and the legend's entries (`legend`). Pure, like the layout that
//! places them.

use super::model::{Chart, VarValue};

/// The most ticks an axis shows.
pub const MAX_TICKS: usize = 6;

/// An axis's ticks: round values (1, 2 or 5 × 10ⁿ apart) from at most `low` to at least
/// `high`, at most `most` of them (never fewer than 2 unless the span is empty), each with its
/// label written with just the decimals the step needs. Empty for a non-finite span.
pub fn axis_ticks(low: f64, high: f64, most: usize) -> Vec<(f64, String)> {
    if !low.is_finite() || !high.is_finite() || most < 2 {
        return Vec::new();
    }
    let (low, high) = (low.min(high).min(0.0), high.max(low).max(0.0));
    if high == low {
        return vec![(0.0, "0".to_owned())];
    }
    let span = high - low;
    // The smallest round step that covers the span in at most `most - 1` gaps.
    let mut exponent = (span / (most - 1) as f64).log10().floor() as i32 - 1;
    loop {
        for mantissa in [1i64, 2, 5] {
            let step = mantissa as f64 * 10f64.powi(exponent);
            let first = (low / step).floor() as i64;
            let last = (high / step).ceil() as i64;
            if ((last - first) as usize) < most {
                return (first..=last)
                    .map(|k| tick(k * mantissa, exponent))
                    .collect();
            }
        }
        exponent += 1;
    }
}

/// The tick `units × 10^exponent`, its value computed from integers (so 0.3 is 0.3) and its
/// label with `-exponent` decimals when the exponent is negative.
fn tick(units: i64, exponent: i32) -> (f64, String) {
    if exponent >= 0 {
        let value = units as f64 * 10f64.powi(exponent);
        return (value, format!("{value}"));
    }
    let scale = 10f64.powi(-exponent);
    let value = units as f64 / scale;
    let decimals = (-exponent) as usize;
    (value, format!("{value:.decimals$}"))
}

/// One legend entry: a variable used in DATA, named without its `$`.
#[derive(Clone, Debug, PartialEq)]
pub struct LegendEntry {
    /// The variable's name without `$` (`$warm` is `warm`).
    pub name: String,
    /// Its colour or material.
    pub value: VarValue,
}

/// The legend: each variable the DATA section uses, once, in the order first used (row by
/// row, range by range); variables defined but unused are left out.
pub fn legend_entries(chart: &Chart) -> Vec<LegendEntry> {
    let mut entries: Vec<LegendEntry> = Vec::new();
    for range in chart.rows.iter().flat_map(|row| &row.ranges) {
        let name = range.var.trim_start_matches('$');
        if entries.iter().any(|e| e.name == name) {
            continue;
        }
        if let Some(value) = chart.vars.get(&range.var) {
            entries.push(LegendEntry {
                name: name.to_owned(),
                value: *value,
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(ticks: &[(f64, String)]) -> Vec<&str> {
        ticks.iter().map(|(_, label)| label.as_str()).collect()
    }

    #[test]
    fn ticks_are_round_and_cover_the_values() {
        assert_eq!(
            values(&axis_ticks(0.0, 18.0, 6)),
            ["0", "5", "10", "15", "20"]
        );
        assert_eq!(
            values(&axis_ticks(0.0, 1.0, 6)),
            ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
        );
        assert_eq!(
            values(&axis_ticks(0.0, 0.3, 6)),
            ["0.0", "0.1", "0.2", "0.3"]
        );
        assert_eq!(values(&axis_ticks(-3.0, 7.0, 6)), ["-5", "0", "5", "10"]);
        assert_eq!(
            values(&axis_ticks(0.0, 1234.0, 6)),
            ["0", "500", "1000", "1500"]
        );
        assert_eq!(values(&axis_ticks(0.0, 0.0, 6)), ["0"]);
        assert!(axis_ticks(0.0, f64::NAN, 6).is_empty());
    }

    #[test]
    fn a_tick_is_exactly_the_decimal_it_shows() {
        let ticks = axis_ticks(0.0, 0.3, 6);
        // Not 3 × 0.1 = 0.30000000000000004.
        assert_eq!(ticks[3], (0.3, "0.3".to_owned()));
    }

    #[test]
    fn ticks_never_exceed_the_most_asked_and_enclose_the_span() {
        for high in [0.01, 0.7, 3.0, 9.99, 10.0, 17.5, 99.0, 101.0, 1e6, 3.3e-5] {
            for low in [0.0, -high / 3.0, -high] {
                let ticks = axis_ticks(low, high, MAX_TICKS);
                assert!(
                    ticks.len() >= 2 && ticks.len() <= MAX_TICKS,
                    "{low}..{high}: {ticks:?}"
                );
                assert!(
                    ticks[0].0 <= low.min(0.0) && ticks[ticks.len() - 1].0 >= high,
                    "{low}..{high}: {ticks:?}"
                );
            }
        }
    }

    #[test]
    fn the_legend_names_each_used_variable_once_in_order_of_use() {
        let text = "CONFIG\nimage-size; 64; 48\nimage-type; png\ngraph-type; histogram\n\
            default-material; material(diffuse, 0.5)\ndefault-color; color(1, 0, 0)\n\
            floor-color; color(0.9, 0.9, 0.9)\nlegend; on\nEND\nVARS\n\
            $unused; color(0, 1, 0)\n$blue; color(0, 0, 1)\n$warm; color(1, 0.5, 0)\nEND\n\
            DATA\n$warm$ 1; 2 $; $blue$ 3 $\n$blue$ 4 $; 5\nEND\n";
        let chart = super::super::parse(text).unwrap();
        let legend = legend_entries(&chart);
        let names: Vec<&str> = legend.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["warm", "blue"]);
        assert!(matches!(legend[1].value, VarValue::Color(c) if c.b == 1.0));
    }
}
