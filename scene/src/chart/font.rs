//! The chart font's metrics, so the layout knows how much room a text takes before Blender
//! draws it.
//!
//! Charts draw every text with Blender's own DejaVu Sans (the font of Blender's interface,
//! shipped in its `datafiles/fonts`; the font compiled into Blender covers Latin-1 only). The
//! table of advances is measured in Blender by `scripts/chart-font-table`. All sizes here are
//! in units of the height of a capital "H" (the *cap height*), which is how a text's size is
//! given to the builder script: it scales the font so that "H" is exactly that tall.

mod table {
    include!("font_table.rs");
}

/// How far the tallest accented capital rises above the baseline, in cap heights.
pub const ASCENT: f64 = 1.3;
/// How far descenders (g, p, y) reach below the baseline, in cap heights.
pub const DESCENT: f64 = 0.3;

/// The advance of `c` (how far the next character starts further along), in cap heights, or
/// `None` when the chart font has no glyph for it.
pub fn advance(c: char) -> Option<f64> {
    let at = table::GLYPHS
        .binary_search_by_key(&u32::from(c), |(cp, _)| *cp)
        .ok()?;
    Some(f64::from(table::GLYPHS[at].1) / 1000.0)
}

/// The first character of `text` that the chart font cannot draw, with its index in
/// characters.
pub fn undrawable(text: &str) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|(_, c)| advance(*c).is_none())
}

/// How wide `text` is, in cap heights: the sum of its characters' advances (Blender does not
/// kern chart text). A character with no glyph counts as a capital "M".
pub fn width(text: &str) -> f64 {
    let fallback = advance('M').unwrap_or(1.0);
    text.chars().map(|c| advance(c).unwrap_or(fallback)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_covers_latin_greek_and_cyrillic() {
        assert!(table::GLYPHS.windows(2).all(|w| w[0].0 < w[1].0));
        for c in "Aaé€ĀŁαΩЖжß0123456789%.,;:–—…°±×".chars() {
            assert!(advance(c).is_some(), "{c:?} has no glyph");
        }
        assert_eq!(undrawable("Sales 中 2026"), Some((6, '中')));
        assert_eq!(undrawable("Ventes é"), None);
    }

    #[test]
    fn widths_add_up_and_wide_letters_are_wider() {
        let h = advance('H').unwrap();
        assert!((width("HH") - 2.0 * h).abs() < 1e-12);
        assert!(width("WWW") > width("iii"));
        assert_eq!(width(""), 0.0);
        // A capital H is about as wide as it is tall in DejaVu Sans.
        assert!((0.9..1.2).contains(&h), "{h}");
    }
}
