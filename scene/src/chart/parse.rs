//! The parser: one pass over the lines, no regex, every problem collected.
//!
//! Sections are recognised line by line; CONFIG and VARS lines are split into `;` fields (a `;`
//! inside parentheses does not split); DATA lines are scanned byte by byte once. Variables used
//! by ranges are looked up after the last line, so VARS may come after DATA.

use std::collections::HashMap;

use super::error::{Diagnostic, Errors};
use super::font;
use super::model::{
    BarSeparation, CameraType, Cell, Chart, Color, Config, Distribution, GraphType, ImageSize,
    ImageType, Keyword, MAX_SURFACE_COLORS, MAX_TEXT_CHARS, Material, MaterialKind, Range, Row,
    Step, Switch, Transform, Var, VarValue, Vars,
};

/// Most values (cells, empty ones included) a DATA section may hold.
pub const MAX_VALUES: usize = 1_000_000;
/// Most bytes of text [`parse`] accepts (16 MiB).
pub const MAX_TEXT_BYTES: usize = 16 * 1024 * 1024;
/// Most diagnostics reported; beyond it one last diagnostic says that reporting stopped.
pub const MAX_DIAGNOSTICS: usize = 1000;

/// Parses a chart file, reporting every problem at once.
pub fn parse(text: &str) -> Result<Chart, Errors> {
    if text.len() > MAX_TEXT_BYTES {
        let mut too_long = Diagnostic::new(
            1,
            1,
            format!("at most {MAX_TEXT_BYTES} bytes of text (MAX_TEXT_BYTES)"),
            &format!("{} bytes", text.len()),
            None,
        );
        // What was found is a count, not text standing at line 1.
        too_long.length = 0;
        return Err(Errors(vec![too_long]));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::default();
    for (i, raw) in text.lines().enumerate() {
        parser.line(Line {
            no: i + 1,
            text: raw,
            ascii: raw.is_ascii(),
        });
    }
    parser.finish()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Config,
    Vars,
    Data,
}

impl Section {
    const ALL: [Section; 3] = [Section::Config, Section::Vars, Section::Data];

    fn name(self) -> &'static str {
        match self {
            Section::Config => "CONFIG",
            Section::Vars => "VARS",
            Section::Data => "DATA",
        }
    }

    fn named(text: &str) -> Option<Section> {
        Section::ALL
            .into_iter()
            .find(|section| section.name().eq_ignore_ascii_case(text))
    }
}

/// One line of input.
#[derive(Clone, Copy)]
struct Line<'a> {
    /// 1-based line number.
    no: usize,
    text: &'a str,
    /// Whether byte offsets equal character offsets (the common case, and the fast one).
    ascii: bool,
}

impl Line<'_> {
    /// 1-based character column of a byte offset.
    fn column(&self, byte: usize) -> usize {
        if self.ascii {
            byte + 1
        } else {
            self.text.get(..byte).map_or(byte, |s| s.chars().count()) + 1
        }
    }
}

/// A `;`-separated field of a CONFIG or VARS line, or an argument in parentheses, trimmed.
#[derive(Clone, Copy, Debug)]
struct Field<'a> {
    /// Byte offset of the trimmed text in its line.
    at: usize,
    text: &'a str,
}

/// Splits `text` (at byte `at` of its line) at `sep`, outside parentheses, trimming each part.
fn split(text: &str, at: usize, sep: u8) -> Vec<Field<'_>> {
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        match byte {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ if byte == sep && depth == 0 => {
                fields.push(field(&text[start..i], at + start));
                start = i + 1;
            }
            _ => {}
        }
    }
    fields.push(field(&text[start..], at + start));
    fields
}

fn field(part: &str, at: usize) -> Field<'_> {
    let lead = part.len() - part.trim_start().len();
    Field {
        at: at + lead,
        text: part.trim(),
    }
}

/// A text of a `title` or `*labels` line: where it starts (its opening quote, if quoted) and
/// what it says, quotes undone.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TextField {
    at: usize,
    text: String,
}

/// Why a line's texts cannot be read.
#[derive(Debug, PartialEq, Eq)]
struct TextError {
    /// Byte offset in the line.
    at: usize,
    expected: &'static str,
    found: String,
    hint: &'static str,
}

/// Splits `text` (at byte `at` of its line) into `;`-separated texts. A text that starts with
/// `"` runs to the next lone `"` (`""` inside stands for one `"`) and may hold `;`; any other
/// runs to the next `;`, trimmed. An empty field is an empty text.
fn split_text(text: &str, at: usize) -> Result<Vec<TextField>, TextError> {
    let bytes = text.as_bytes();
    let blank = |b: u8| b == b' ' || b == b'\t';
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        while i < bytes.len() && blank(bytes[i]) {
            i += 1;
        }
        let start = i;
        let end = if bytes.get(i) == Some(&b'"') {
            let mut value = String::new();
            let mut j = i + 1;
            let mut closed = false;
            while let Some(c) = text[j..].chars().next() {
                if c == '"' {
                    if bytes.get(j + 1) == Some(&b'"') {
                        value.push('"');
                        j += 2;
                        continue;
                    }
                    closed = true;
                    j += 1;
                    break;
                }
                value.push(c);
                j += c.len_utf8();
            }
            if !closed {
                return Err(TextError {
                    at: at + start,
                    expected: "`\"` to close the text opened here",
                    found: text[start..].trim_end().to_owned(),
                    hint: "inside a quoted text, write `\"` as `\"\"`",
                });
            }
            while j < bytes.len() && blank(bytes[j]) {
                j += 1;
            }
            if j < bytes.len() && bytes[j] != b';' {
                let stop = text[j..].find(';').map_or(text.len(), |e| j + e);
                return Err(TextError {
                    at: at + j,
                    expected: "`;` after the quoted text",
                    found: text[j..stop].trim_end().to_owned(),
                    hint: "quote the whole text, or put the `;` right after its closing `\"`",
                });
            }
            fields.push(TextField {
                at: at + start,
                text: value,
            });
            j
        } else {
            let stop = text[i..].find(';').map_or(text.len(), |e| i + e);
            fields.push(TextField {
                at: at + start,
                text: text[start..stop].trim_end().to_owned(),
            });
            stop
        };
        if end >= text.len() {
            return Ok(fields);
        }
        i = end + 1;
    }
}

/// Where the `index`-th character of `text` stands in its line (a byte offset), undoing the
/// quoting: inside quotes, each `"` of the text was written `""`.
fn raw_offset(line: &str, text: &TextField, index: usize) -> usize {
    let quoted = line.as_bytes().get(text.at) == Some(&b'"');
    let mut at = text.at + usize::from(quoted);
    for c in text.text.chars().take(index) {
        at += if quoted && c == '"' { 2 } else { c.len_utf8() };
    }
    at
}

/// The CONFIG keys, in canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    ImageSize,
    ImageType,
    GraphType,
    DefaultMaterial,
    DefaultColor,
    FloorColor,
    CameraType,
    CameraTransform,
    BackgroundStrength,
    BarWidth,
    BarSeparation,
    MinimumBarHeight,
    CakeHeight,
    Title,
    XLabels,
    ZLabels,
    Labels,
    ValueLabels,
    Axis,
    Legend,
    TextColor,
    SurfaceColors,
}

impl Key {
    const COUNT: usize = 22;
    const ALL: [Key; Key::COUNT] = [
        Key::ImageSize,
        Key::ImageType,
        Key::GraphType,
        Key::DefaultMaterial,
        Key::DefaultColor,
        Key::FloorColor,
        Key::CameraType,
        Key::CameraTransform,
        Key::BackgroundStrength,
        Key::BarWidth,
        Key::BarSeparation,
        Key::MinimumBarHeight,
        Key::CakeHeight,
        Key::Title,
        Key::XLabels,
        Key::ZLabels,
        Key::Labels,
        Key::ValueLabels,
        Key::Axis,
        Key::Legend,
        Key::TextColor,
        Key::SurfaceColors,
    ];
    const REQUIRED: [Key; 6] = [
        Key::ImageSize,
        Key::ImageType,
        Key::GraphType,
        Key::DefaultMaterial,
        Key::DefaultColor,
        Key::FloorColor,
    ];

    fn name(self) -> &'static str {
        match self {
            Key::ImageSize => "image-size",
            Key::ImageType => "image-type",
            Key::GraphType => "graph-type",
            Key::DefaultMaterial => "default-material",
            Key::DefaultColor => "default-color",
            Key::FloorColor => "floor-color",
            Key::CameraType => "camera-type",
            Key::CameraTransform => "camera-transform",
            Key::BackgroundStrength => "background-strength",
            Key::BarWidth => "bar-width",
            Key::BarSeparation => "bar-separation",
            Key::MinimumBarHeight => "minimum-bar-height",
            Key::CakeHeight => "cake-height",
            Key::Title => "title",
            Key::XLabels => "x-labels",
            Key::ZLabels => "z-labels",
            Key::Labels => "labels",
            Key::ValueLabels => "value-labels",
            Key::Axis => "axis",
            Key::Legend => "legend",
            Key::TextColor => "text-color",
            Key::SurfaceColors => "surface-colors",
        }
    }

    /// Whether its values are texts (quoted when they hold a `;`).
    fn is_text(self) -> bool {
        matches!(self, Key::Title | Key::XLabels | Key::ZLabels | Key::Labels)
    }

    fn named(text: &str) -> Option<Key> {
        Key::ALL
            .into_iter()
            .find(|key| key.name().eq_ignore_ascii_case(text))
    }

    /// The graph types this key applies to, and how the format names them; `None` for keys
    /// of every graph type.
    fn only_for(self) -> Option<(&'static [GraphType], &'static str)> {
        match self {
            Key::BarWidth | Key::BarSeparation | Key::MinimumBarHeight => {
                Some((&[GraphType::Histogram], "histograms"))
            }
            Key::XLabels | Key::ZLabels | Key::Axis => Some((
                &[GraphType::Histogram, GraphType::Surface],
                "histograms and surfaces",
            )),
            Key::CakeHeight | Key::Labels => Some((&[GraphType::Cake], "cakes")),
            Key::SurfaceColors => Some((&[GraphType::Surface], "surfaces")),
            _ => None,
        }
    }
}

/// The CONFIG section as read so far.
#[derive(Default)]
struct Draft {
    /// Where each key (by `Key as usize`) was first set: line and column.
    seen: [Option<(usize, usize)>; Key::COUNT],
    image_size: Option<ImageSize>,
    image_type: Option<ImageType>,
    graph_type: Option<GraphType>,
    default_material: Option<Material>,
    default_color: Option<Color>,
    floor_color: Option<Color>,
    camera_type: Option<CameraType>,
    camera_transform: Option<Transform>,
    background_strength: Option<f64>,
    bar_width: Option<f64>,
    bar_separation: Option<BarSeparation>,
    minimum_bar_height: Option<f64>,
    cake_height: Option<f64>,
    title: Option<String>,
    x_labels: Option<Vec<String>>,
    z_labels: Option<Vec<String>>,
    labels: Option<Vec<String>>,
    value_labels: Option<Switch>,
    axis: Option<Switch>,
    legend: Option<Switch>,
    text_color: Option<Color>,
    surface_colors: Option<Vec<Color>>,
}

/// A range opener, kept until the variables are known.
struct Opener {
    row: usize,
    range: usize,
    line: usize,
    column: usize,
}

#[derive(Default)]
struct Parser {
    diagnostics: Vec<Diagnostic>,
    /// Diagnostics not kept because of [`MAX_DIAGNOSTICS`].
    dropped: usize,
    /// The open section: which, and its header's line and column.
    open: Option<(Section, usize, usize)>,
    /// Where each section (by `Section as usize`) was opened: line and column.
    sections: [Option<(usize, usize)>; 3],
    config: Draft,
    vars: Vec<Var>,
    /// Variable name → index in `vars`, and the line it was defined on.
    var_index: HashMap<String, (usize, usize)>,
    rows: Vec<Row>,
    openers: Vec<Opener>,
    values: usize,
    /// Set once [`MAX_VALUES`] is exceeded; later rows are skipped.
    too_many_values: bool,
    /// Line and end column of the last non-blank line, for "missing at end of file".
    last: (usize, usize),
}

/// Levenshtein distance between two short words, case-insensitively.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().flat_map(char::to_lowercase).collect();
    let b: Vec<char> = b.chars().flat_map(char::to_lowercase).collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// ``did you mean `candidate`?`` for the closest candidate within 2 edits (1 for 3-letter
/// candidates), if any.
fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<String> {
    if word.is_empty() || word.len() > 64 {
        return None;
    }
    candidates
        .into_iter()
        .map(|candidate| (distance(word, candidate), candidate))
        .filter(|&(d, candidate)| d > 0 && d <= 2 && d <= candidate.chars().count() / 2)
        .min_by_key(|&(d, _)| d)
        .map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

const SEPARATOR_HINT: &str = "use `;` to separate values";

/// A finite number, written as digits with an optional sign, point and exponent.
fn number(text: &str) -> Option<f64> {
    let first = *text.as_bytes().first()?;
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A hint for a cell that is not a number: a likely typo of a digit, or of `END`.
fn number_hint(text: &str) -> Option<String> {
    let fixed: String = text
        .chars()
        .map(|c| match c {
            'O' | 'o' => '0',
            'l' | 'I' => '1',
            other => other,
        })
        .collect();
    if fixed != text && number(&fixed).is_some() {
        return Some(format!("did you mean {fixed}?"));
    }
    if text.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
        return did_you_mean(text, ["END", "END_DATA"]);
    }
    None
}

/// Byte offset of the first `:` or `,` in `text` if every part it separates is a number.
fn misplaced_separator(text: &str) -> Option<usize> {
    let at = text.find([':', ','])?;
    text.split([':', ','])
        .all(|part| number(part.trim()).is_some())
        .then_some(at)
}

fn is_name_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_'
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Whether `text` is a whole variable name, `$` included.
fn is_var_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 2
        && bytes[0] == b'$'
        && is_name_start(bytes[1])
        && bytes[2..].iter().all(|&b| is_name_byte(b))
}

/// A call such as `color(1, 0, 0)`, split into its name and arguments.
struct Call<'a> {
    name: Field<'a>,
    args: Vec<Field<'a>>,
    /// Byte offset in the line just past the `)`.
    end: usize,
}

impl Parser {
    fn error(
        &mut self,
        line: &Line<'_>,
        byte: usize,
        expected: impl Into<String>,
        found: &str,
        suggestion: Option<String>,
    ) {
        self.error_at(line.no, line.column(byte), expected, found, suggestion);
    }

    fn error_at(
        &mut self,
        line: usize,
        column: usize,
        expected: impl Into<String>,
        found: &str,
        suggestion: Option<String>,
    ) {
        if self.diagnostics.len() >= MAX_DIAGNOSTICS {
            self.dropped += 1;
            return;
        }
        self.diagnostics
            .push(Diagnostic::new(line, column, expected, found, suggestion));
    }

    fn line(&mut self, line: Line<'_>) {
        let trimmed = line.text.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return;
        }
        let start = line.text.len() - line.text.trim_start().len();
        let end = line.text.trim_end().len();
        self.last = (line.no, line.column(end));
        if let Some(section) = Section::named(trimmed) {
            self.close_unclosed();
            let column = line.column(start);
            if let Some((first, _)) = self.sections[section as usize] {
                self.error(
                    &line,
                    start,
                    format!(
                        "each section once (`{}` is already opened on line {first})",
                        section.name()
                    ),
                    trimmed,
                    None,
                );
            } else {
                self.sections[section as usize] = Some((line.no, column));
            }
            self.open = Some((section, line.no, column));
            return;
        }
        let is_end = trimmed.eq_ignore_ascii_case("end")
            || trimmed
                .get(..4)
                .is_some_and(|head| head.eq_ignore_ascii_case("end_"))
                && !trimmed.contains([';', '$']);
        let Some((section, _, _)) = self.open else {
            let word = trimmed.chars().all(|c| c.is_ascii_alphabetic());
            let hint = if word {
                did_you_mean(trimmed, Section::ALL.map(Section::name))
            } else {
                None
            };
            self.error(
                &line,
                start,
                "a section (`CONFIG`, `VARS` or `DATA`)",
                trimmed,
                hint,
            );
            return;
        };
        if is_end {
            let own = format!("END_{}", section.name());
            if !trimmed.eq_ignore_ascii_case("end") && !trimmed.eq_ignore_ascii_case(&own) {
                let hint = did_you_mean(trimmed, [own.as_str()]);
                self.error(&line, start, format!("`END` or `{own}`"), trimmed, hint);
            }
            self.open = None;
            return;
        }
        match section {
            Section::Config => self.config_line(&line),
            Section::Vars => self.var_line(&line),
            Section::Data => self.data_line(&line),
        }
    }

    /// Reports the open section, if any, as never closed.
    fn close_unclosed(&mut self) {
        if let Some((section, line, column)) = self.open.take() {
            self.error_at(
                line,
                column,
                format!(
                    "`END` or `END_{name}` to close the `{name}` section opened here",
                    name = section.name()
                ),
                "",
                None,
            );
        }
    }

    // ---- CONFIG ----

    fn config_line(&mut self, line: &Line<'_>) {
        let fields = split(line.text, 0, b';');
        let head = fields[0];
        let Some(key) = Key::named(head.text) else {
            if let Some(sep) = head.text.find([':', ','])
                && let Some(key) = Key::named(head.text[..sep].trim())
            {
                self.error(
                    line,
                    head.at + sep,
                    "`;`",
                    &head.text[sep..=sep],
                    Some(SEPARATOR_HINT.to_owned()),
                );
                let column = line.column(head.at);
                self.config.seen[key as usize].get_or_insert((line.no, column));
                return;
            }
            let hint = did_you_mean(
                head.text,
                Key::ALL.map(Key::name).into_iter().chain(["END"]),
            );
            self.error(line, head.at, "a CONFIG key", head.text, hint);
            return;
        };
        if let Some((first, _)) = self.config.seen[key as usize] {
            self.error(
                line,
                head.at,
                format!(
                    "each key once (`{}` is already set on line {first})",
                    key.name()
                ),
                head.text,
                None,
            );
            return;
        }
        self.config.seen[key as usize] = Some((line.no, line.column(head.at)));
        if key.is_text() {
            self.text_line(line, key, &fields);
            return;
        }
        let values = &fields[1..];
        if key == Key::SurfaceColors {
            self.surface_colors(line, &fields);
            return;
        }
        if key == Key::BarSeparation && values.len() == 2 {
            let x = self.non_negative(line, values[0]);
            let z = self.non_negative(line, values[1]);
            if let (Some(x), Some(z)) = (x, z) {
                self.config.bar_separation = Some(BarSeparation { x, z });
            }
            return;
        }
        let count = if key == Key::ImageSize { 2 } else { 1 };
        let Some(values) = self.values(line, key, values, count) else {
            return;
        };
        let value = values[0];
        match key {
            Key::ImageSize => {
                let width = self.pixels(line, values[0]);
                let height = self.pixels(line, values[1]);
                if let (Some(width), Some(height)) = (width, height) {
                    self.config.image_size = Some(ImageSize { width, height });
                }
            }
            Key::ImageType => {
                self.config.image_type = self.keyword::<ImageType>(line, value);
            }
            Key::GraphType => {
                self.config.graph_type = self.keyword::<GraphType>(line, value);
            }
            Key::DefaultMaterial => self.config.default_material = self.material(line, value),
            Key::DefaultColor => self.config.default_color = self.color(line, value),
            Key::FloorColor => self.config.floor_color = self.color(line, value),
            Key::CameraType => {
                self.config.camera_type = self.keyword::<CameraType>(line, value);
            }
            Key::CameraTransform => self.config.camera_transform = self.transform(line, value),
            Key::BackgroundStrength => {
                self.config.background_strength = self.non_negative(line, value);
            }
            Key::BarWidth => self.config.bar_width = self.positive(line, value),
            Key::BarSeparation => {
                let parts = split(value.text, value.at, b',');
                if parts.len() != 2 {
                    self.error(line, value.at, "two gaps `X, Z`", value.text, None);
                    return;
                }
                let x = self.non_negative(line, parts[0]);
                let z = self.non_negative(line, parts[1]);
                if let (Some(x), Some(z)) = (x, z) {
                    self.config.bar_separation = Some(BarSeparation { x, z });
                }
            }
            Key::MinimumBarHeight => {
                self.config.minimum_bar_height = self.non_negative(line, value);
            }
            Key::CakeHeight => self.config.cake_height = self.positive(line, value),
            Key::ValueLabels => self.config.value_labels = self.keyword(line, value),
            Key::Axis => self.config.axis = self.keyword(line, value),
            Key::Legend => self.config.legend = self.keyword(line, value),
            Key::TextColor => self.config.text_color = self.color(line, value),
            Key::Title | Key::XLabels | Key::ZLabels | Key::Labels | Key::SurfaceColors => {}
        }
    }

    /// `surface-colors; COLOR; COLOR[; ...]`: two to [`MAX_SURFACE_COLORS`] colours.
    fn surface_colors(&mut self, line: &Line<'_>, fields: &[Field<'_>]) {
        let values = &fields[1..];
        if values.len() < 2 || values.len() > MAX_SURFACE_COLORS {
            let (at, found) = match values.get(MAX_SURFACE_COLORS) {
                Some(extra) => (extra.at, extra.text),
                None => (fields[0].at, fields[0].text),
            };
            self.error(
                line,
                at,
                format!(
                    "2 to {MAX_SURFACE_COLORS} colours, lowest value first \
                     (`surface-colors; COLOR; COLOR[; ...]`)"
                ),
                found,
                Some(format!("{} given", values.len())),
            );
            return;
        }
        let colors: Vec<Option<Color>> = values.iter().map(|v| self.color(line, *v)).collect();
        if colors.iter().all(Option::is_some) {
            self.config.surface_colors = Some(colors.into_iter().flatten().collect());
        }
    }

    /// Labels name columns, rows or slices: no more of them than the data has.
    fn check_label_counts(&mut self) {
        let columns = self.rows.iter().map(|r| r.cells.len()).max().unwrap_or(0);
        let rows = self.rows.len();
        let lists = [
            (
                Key::XLabels,
                self.config.x_labels.as_ref().map(Vec::len),
                columns,
                "columns",
            ),
            (
                Key::ZLabels,
                self.config.z_labels.as_ref().map(Vec::len),
                rows,
                "rows",
            ),
            (
                Key::Labels,
                self.config.labels.as_ref().map(Vec::len),
                columns,
                "values in a row",
            ),
        ];
        for (key, given, most, what) in lists {
            let (Some(given), Some((line, column))) = (given, self.config.seen[key as usize])
            else {
                continue;
            };
            if given > most && !self.too_many_values {
                self.error_at(
                    line,
                    column,
                    format!(
                        "at most {most} labels in `{}` (the data has {most} {what})",
                        key.name()
                    ),
                    key.name(),
                    Some(format!("{} labels given", given)),
                );
            }
        }
    }

    /// A `title`, `x-labels`, `z-labels` or `labels` line: texts, quoted where they hold a `;`.
    fn text_line(&mut self, line: &Line<'_>, key: Key, fields: &[Field<'_>]) {
        let Some(first) = fields.get(1) else {
            let _ = self.values(line, key, &[], 1);
            return;
        };
        let texts = match split_text(&line.text[first.at..], first.at) {
            Ok(texts) => texts,
            Err(e) => {
                self.error(line, e.at, e.expected, &e.found, Some(e.hint.to_owned()));
                return;
            }
        };
        let mut good = true;
        for text in &texts {
            if text.text.chars().count() > MAX_TEXT_CHARS {
                self.error(
                    line,
                    text.at,
                    format!("at most {MAX_TEXT_CHARS} characters of text"),
                    &text.text,
                    None,
                );
                good = false;
            } else if let Some(c) = text.text.chars().find(|c| c.is_control()) {
                self.error(
                    line,
                    text.at,
                    "text without control characters",
                    &text.text,
                    Some(format!("remove the character U+{:04X}", u32::from(c))),
                );
                good = false;
            } else if let Some((index, c)) = font::undrawable(&text.text) {
                self.error(
                    line,
                    raw_offset(line.text, text, index),
                    "a character the chart font draws (Latin, Greek, Cyrillic and common signs)",
                    &c.to_string(),
                    Some(format!(
                        "the chart font has no glyph for U+{:04X}: leave it out or spell it \
                         in one of those scripts",
                        u32::from(c)
                    )),
                );
                good = false;
            }
        }
        if !good {
            return;
        }
        if key == Key::Title {
            if let Some(extra) = texts.get(1) {
                let whole = line.text[first.at..].trim_end();
                self.error(
                    line,
                    extra.at,
                    "one title",
                    &extra.text,
                    Some(format!(
                        "quote a title that holds `;`: \"{}\"",
                        whole.replace('"', "\"\"")
                    )),
                );
                return;
            }
            self.config.title = texts.into_iter().next().map(|t| t.text);
            return;
        }
        let texts: Vec<String> = texts.into_iter().map(|t| t.text).collect();
        match key {
            Key::XLabels => self.config.x_labels = Some(texts),
            Key::ZLabels => self.config.z_labels = Some(texts),
            _ => self.config.labels = Some(texts),
        }
    }

    /// Checks that `key` has exactly `count` values.
    fn values<'f>(
        &mut self,
        line: &Line<'_>,
        key: Key,
        values: &'f [Field<'f>],
        count: usize,
    ) -> Option<&'f [Field<'f>]> {
        if values.len() < count {
            if let Some((value, sep)) = values
                .iter()
                .find_map(|value| value.text.find([':', ',']).map(|sep| (value, sep)))
            {
                self.error(
                    line,
                    value.at + sep,
                    "`;`",
                    &value.text[sep..=sep],
                    Some(SEPARATOR_HINT.to_owned()),
                );
            } else {
                let plural = if count == 1 { "value" } else { "values" };
                self.error(
                    line,
                    line.text.trim_end().len(),
                    format!("{count} {plural} after `{}`", key.name()),
                    "",
                    None,
                );
            }
            return None;
        }
        if let Some(extra) = values.get(count) {
            self.error(
                line,
                extra.at,
                format!("no more values after `{}`", key.name()),
                extra.text,
                None,
            );
            return None;
        }
        Some(values)
    }

    fn keyword<T: Keyword>(&mut self, line: &Line<'_>, value: Field<'_>) -> Option<T> {
        if let Some(&found) = T::ALL
            .iter()
            .find(|k| k.name().eq_ignore_ascii_case(value.text))
        {
            return Some(found);
        }
        let names: Vec<String> = T::ALL.iter().map(|k| format!("`{}`", k.name())).collect();
        let expected = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        let hint = did_you_mean(value.text, T::ALL.iter().map(|k| k.name()));
        self.error(line, value.at, expected, value.text, hint);
        None
    }

    /// A number satisfying `ok`, described by `what` in the error.
    fn checked(
        &mut self,
        line: &Line<'_>,
        value: Field<'_>,
        what: &str,
        ok: impl Fn(f64) -> bool,
    ) -> Option<f64> {
        match number(value.text) {
            Some(n) if ok(n) => Some(n),
            Some(_) => {
                self.error(line, value.at, what, value.text, None);
                None
            }
            None => {
                let hint = match misplaced_separator(value.text) {
                    Some(_) => Some(SEPARATOR_HINT.to_owned()),
                    None => number_hint(value.text),
                };
                self.error(line, value.at, "a number", value.text, hint);
                None
            }
        }
    }

    fn any_number(&mut self, line: &Line<'_>, value: Field<'_>) -> Option<f64> {
        self.checked(line, value, "a number", |_| true)
    }

    fn positive(&mut self, line: &Line<'_>, value: Field<'_>) -> Option<f64> {
        self.checked(line, value, "a number above 0", |n| n > 0.0)
    }

    fn non_negative(&mut self, line: &Line<'_>, value: Field<'_>) -> Option<f64> {
        self.checked(line, value, "a number of at least 0", |n| n >= 0.0)
    }

    fn unit(&mut self, line: &Line<'_>, value: Field<'_>, what: &str) -> Option<f64> {
        self.checked(line, value, what, |n| (0.0..=1.0).contains(&n))
    }

    fn pixels(&mut self, line: &Line<'_>, value: Field<'_>) -> Option<u32> {
        match value.text.parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                let hint = number_hint(value.text);
                self.error(
                    line,
                    value.at,
                    "a whole number of pixels above 0",
                    value.text,
                    hint,
                );
                None
            }
        }
    }

    /// Parses `name(arg, ...)` at the start of `text` (which sits at byte `at` of the line).
    fn call<'t>(
        &mut self,
        line: &Line<'_>,
        text: &'t str,
        at: usize,
        expected: &str,
    ) -> Option<Call<'t>> {
        let bytes = text.as_bytes();
        let mut i = 0;
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let name_start = i;
        while bytes
            .get(i)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            i += 1;
        }
        if i == name_start {
            self.error(
                line,
                at + name_start,
                expected,
                text[name_start..].trim(),
                None,
            );
            return None;
        }
        let name = Field {
            at: at + name_start,
            text: &text[name_start..i],
        };
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'(') {
            self.error(line, at + i, "`(`", text[i..].trim(), None);
            return None;
        }
        let open = i + 1;
        let Some(close) = text[open..].find(')').map(|c| open + c) else {
            self.error(line, at + text.len(), "`)`", "", None);
            return None;
        };
        let inner = &text[open..close];
        if let Some(semicolon) = inner.find(';') {
            self.error(
                line,
                at + open + semicolon,
                "`,` between the arguments",
                ";",
                Some("use `,` inside parentheses".to_owned()),
            );
            return None;
        }
        let args = if inner.trim().is_empty() {
            Vec::new()
        } else {
            split(inner, at + open, b',')
        };
        Some(Call {
            name,
            args,
            end: at + close + 1,
        })
    }

    /// Checks a call's name and argument count.
    fn check_call(
        &mut self,
        line: &Line<'_>,
        call: &Call<'_>,
        names: &[&'static str],
        expected: &str,
    ) -> Option<&'static str> {
        let Some(&name) = names
            .iter()
            .find(|name| name.eq_ignore_ascii_case(call.name.text))
        else {
            let hint = did_you_mean(call.name.text, names.iter().copied());
            self.error(line, call.name.at, expected, call.name.text, hint);
            return None;
        };
        Some(name)
    }

    /// Reports anything after a complete value.
    fn check_rest(&mut self, line: &Line<'_>, value: Field<'_>, end: usize) -> Option<()> {
        let rest = &value.text[end - value.at..];
        if rest.trim().is_empty() {
            Some(())
        } else {
            let lead = rest.len() - rest.trim_start().len();
            self.error(line, end + lead, "the end of the value", rest.trim(), None);
            None
        }
    }

    fn arg_count(
        &mut self,
        line: &Line<'_>,
        call: &Call<'_>,
        count: usize,
        form: &str,
    ) -> Option<()> {
        if call.args.len() == count {
            return Some(());
        }
        if let Some(extra) = call.args.get(count) {
            self.error(line, extra.at, format!("`{form}`"), extra.text, None);
        } else {
            self.error(line, call.end - 1, format!("`{form}`"), ")", None);
        }
        None
    }

    fn color(&mut self, line: &Line<'_>, value: Field<'_>) -> Option<Color> {
        const FORM: &str = "color(r, g, b)";
        let call = self.call(line, value.text, value.at, "`color(r, g, b)`")?;
        self.check_call(line, &call, &["color"], "`color(r, g, b)`")?;
        self.arg_count(line, &call, 3, FORM)?;
        let r = self.unit(line, call.args[0], "a channel in 0..1");
        let g = self.unit(line, call.args[1], "a channel in 0..1");
        let b = self.unit(line, call.args[2], "a channel in 0..1");
        self.check_rest(line, value, call.end)?;
        Some(Color {
            r: r?,
            g: g?,
            b: b?,
        })
    }

    fn material(&mut self, line: &Line<'_>, value: Field<'_>) -> Option<Material> {
        const EXPECTED: &str =
            "`material(diffuse, ROUGHNESS)` or `material(glossy|glass, DIST, ROUGHNESS, IOR)`";
        let call = self.call(line, value.text, value.at, EXPECTED)?;
        self.check_call(line, &call, &["material"], EXPECTED)?;
        let Some(&kind) = call.args.first() else {
            self.error(
                line,
                call.end - 1,
                "`diffuse`, `glossy` or `glass`",
                ")",
                None,
            );
            return None;
        };
        let kind = self.keyword::<MaterialKind>(line, kind)?;
        let material = if kind == MaterialKind::Diffuse {
            self.arg_count(line, &call, 2, "material(diffuse, ROUGHNESS)")?;
            let roughness = self.unit(line, call.args[1], "a roughness in 0..1")?;
            Material::Diffuse { roughness }
        } else {
            let form = format!("material({}, DIST, ROUGHNESS, IOR)", kind.name());
            self.arg_count(line, &call, 4, &form)?;
            let distribution = self.keyword::<Distribution>(line, call.args[1]);
            let roughness = self.unit(line, call.args[2], "a roughness in 0..1");
            let ior = self.positive(line, call.args[3]);
            let (distribution, roughness, ior) = (distribution?, roughness?, ior?);
            if kind == MaterialKind::Glossy {
                Material::Glossy {
                    distribution,
                    roughness,
                    ior,
                }
            } else {
                Material::Glass {
                    distribution,
                    roughness,
                    ior,
                }
            }
        };
        self.check_rest(line, value, call.end)?;
        Some(material)
    }

    fn transform(&mut self, line: &Line<'_>, value: Field<'_>) -> Option<Transform> {
        const EXPECTED: &str = "`translate(x, y, z)` or `rotate(angle, ax, ay, az)`";
        let mut steps = Vec::new();
        let mut at = value.at;
        loop {
            let text = &value.text[at - value.at..];
            let call = self.call(line, text, at, EXPECTED)?;
            let name = self.check_call(line, &call, &["translate", "rotate"], EXPECTED)?;
            if name == "translate" {
                self.arg_count(line, &call, 3, "translate(x, y, z)")?;
                let x = self.any_number(line, call.args[0]);
                let y = self.any_number(line, call.args[1]);
                let z = self.any_number(line, call.args[2]);
                steps.push(Step::Translate {
                    x: x?,
                    y: y?,
                    z: z?,
                });
            } else {
                self.arg_count(line, &call, 4, "rotate(angle, ax, ay, az)")?;
                let degrees = self.any_number(line, call.args[0]);
                let ax = self.any_number(line, call.args[1]);
                let ay = self.any_number(line, call.args[2]);
                let az = self.any_number(line, call.args[3]);
                let axis = [ax?, ay?, az?];
                if axis == [0.0; 3] {
                    self.error(
                        line,
                        call.args[1].at,
                        "a rotation axis that is not zero",
                        "0, 0, 0",
                        None,
                    );
                    return None;
                }
                steps.push(Step::Rotate {
                    degrees: degrees?,
                    axis,
                });
            }
            let rest = &value.text[call.end - value.at..];
            let lead = rest.len() - rest.trim_start().len();
            match rest.trim_start().as_bytes().first() {
                None => return Some(Transform { steps }),
                Some(b'.') => at = call.end + lead + 1,
                Some(_) => {
                    self.error(
                        line,
                        call.end + lead,
                        "`.` between steps or the end of the value",
                        rest.trim(),
                        None,
                    );
                    return None;
                }
            }
        }
    }

    // ---- VARS ----

    fn var_line(&mut self, line: &Line<'_>) {
        let fields = split(line.text, 0, b';');
        let name = fields[0];
        if fields.len() < 2 {
            if let Some(sep) = name.text.find([':', ',']) {
                self.error(
                    line,
                    name.at + sep,
                    "`;`",
                    &name.text[sep..=sep],
                    Some(SEPARATOR_HINT.to_owned()),
                );
            } else {
                self.error(
                    line,
                    line.text.trim_end().len(),
                    "`; COLOR` or `; MATERIAL` after the variable name",
                    "",
                    None,
                );
            }
            return;
        }
        let mut ok = true;
        if !is_var_name(name.text) {
            let dollar = format!("${}", name.text);
            let hint = is_var_name(&dollar).then(|| format!("did you mean `{dollar}`?"));
            self.error(
                line,
                name.at,
                "a variable name: `$`, a letter or `_`, then letters, digits or `_`",
                name.text,
                hint,
            );
            ok = false;
        } else if let Some(&(_, first)) = self.var_index.get(name.text) {
            self.error(
                line,
                name.at,
                format!(
                    "each variable once (`{}` is already defined on line {first})",
                    name.text
                ),
                name.text,
                None,
            );
            ok = false;
        }
        if let Some(extra) = fields.get(2) {
            self.error(
                line,
                extra.at,
                "no more values after the variable's value",
                extra.text,
                None,
            );
            return;
        }
        let value = fields[1];
        let head = value
            .text
            .split(|c: char| c == '(' || c.is_whitespace())
            .next()
            .unwrap_or("");
        let parsed = if head.eq_ignore_ascii_case("color") {
            self.color(line, value).map(VarValue::Color)
        } else if head.eq_ignore_ascii_case("material") {
            self.material(line, value).map(VarValue::Material)
        } else {
            let hint = did_you_mean(head, ["color", "material"]);
            self.error(
                line,
                value.at,
                "`color(...)` or `material(...)`",
                value.text,
                hint,
            );
            None
        };
        if let (true, Some(value)) = (ok, parsed) {
            self.var_index
                .insert(name.text.to_owned(), (self.vars.len(), line.no));
            self.vars.push(Var {
                name: name.text.to_owned(),
                value,
            });
        }
    }

    // ---- DATA ----

    fn data_line(&mut self, line: &Line<'_>) {
        if self.too_many_values {
            return;
        }
        let text = line.text;
        let bytes = text.as_bytes();
        let mut cells: Vec<Cell> = Vec::new();
        let mut ranges: Vec<Range> = Vec::new();
        // Open ranges: index in `ranges` and the opener's byte offset.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        let row = self.rows.len();
        let mut segment = 0;
        loop {
            let end = bytes[segment..]
                .iter()
                .position(|&b| b == b';')
                .map_or(bytes.len(), |p| segment + p);
            let last = end == bytes.len();
            let index = cells.len();
            let mut value: Option<(usize, usize)> = None;
            let mut i = segment;
            while i < end {
                let byte = bytes[i];
                if byte == b'$' {
                    let boundary = index + usize::from(value.is_some());
                    let mut name_end = i + 1;
                    if bytes.get(name_end).is_some_and(|&b| is_name_start(b)) {
                        while name_end < end && is_name_byte(bytes[name_end]) {
                            name_end += 1;
                        }
                    }
                    if name_end > i + 1 {
                        if name_end < end && bytes[name_end] == b'$' {
                            let range = ranges.len();
                            ranges.push(Range {
                                var: text[i..name_end].to_owned(),
                                start: boundary,
                                end: usize::MAX,
                            });
                            stack.push((range, i));
                            self.openers.push(Opener {
                                row,
                                range,
                                line: line.no,
                                column: line.column(i),
                            });
                            i = name_end + 1;
                        } else {
                            self.error(
                                line,
                                name_end,
                                format!("`$` to end the variable `{}`", &text[i..name_end]),
                                text[name_end..end].trim(),
                                None,
                            );
                            i = name_end;
                        }
                    } else {
                        if let Some((range, _)) = stack.pop() {
                            ranges[range].end = boundary;
                        } else {
                            self.error(
                                line,
                                i,
                                "a value, `;` or `$name$` (this `$` closes no range)",
                                "$",
                                None,
                            );
                        }
                        i += 1;
                    }
                } else if byte.is_ascii_whitespace() {
                    i += 1;
                } else {
                    let run_end = bytes[i..end]
                        .iter()
                        .position(|&b| b == b'$')
                        .map_or(end, |p| i + p);
                    let run = text[i..run_end].trim_end();
                    if value.is_some() {
                        self.error(line, i, "`;` or `$` after a value", run, None);
                    } else {
                        value = Some((i, i + run.len()));
                    }
                    i = run_end;
                }
            }
            if value.is_some() || !last {
                let number = value.and_then(|(start, stop)| self.cell(line, start, stop));
                cells.push(Cell {
                    value: number,
                    ..Cell::default()
                });
            }
            if last {
                break;
            }
            segment = end + 1;
        }
        for &(_, at) in &stack {
            self.error(line, at, "`$` to close this range", &text[at..], None);
        }
        if cells.is_empty() {
            let start = text.len() - text.trim_start().len();
            self.error(
                line,
                start,
                "at least one value in a row",
                text.trim(),
                None,
            );
        }
        self.values += cells.len();
        if self.values > MAX_VALUES {
            self.too_many_values = true;
            self.error(
                line,
                text.len() - text.trim_start().len(),
                format!("at most {MAX_VALUES} values in DATA (MAX_VALUES)"),
                text.trim(),
                None,
            );
            return;
        }
        self.rows.push(Row { cells, ranges });
    }

    /// The number in `line.text[start..stop]`, or a diagnostic.
    fn cell(&mut self, line: &Line<'_>, start: usize, stop: usize) -> Option<f64> {
        let text = &line.text[start..stop];
        if let Some(n) = number(text) {
            return Some(n);
        }
        if let Some(sep) = misplaced_separator(text) {
            self.error(
                line,
                start + sep,
                "`;`",
                &text[sep..=sep],
                Some(SEPARATOR_HINT.to_owned()),
            );
        } else {
            self.error(line, start, "a number", text, number_hint(text));
        }
        None
    }

    // ---- end of file ----

    fn finish(mut self) -> Result<Chart, Errors> {
        self.close_unclosed();
        let eof = if self.last.0 == 0 {
            (1, 1)
        } else {
            (self.last.0, self.last.1)
        };
        for section in [Section::Config, Section::Data] {
            if self.sections[section as usize].is_none() {
                self.error_at(
                    eof.0,
                    eof.1,
                    format!("a `{}` section", section.name()),
                    "",
                    None,
                );
            }
        }
        if let Some((line, column)) = self.sections[Section::Data as usize]
            && self.rows.is_empty()
            && !self.too_many_values
        {
            self.error_at(line, column, "at least one row in `DATA`", "", None);
        }
        if let Some((line, column)) = self.sections[Section::Config as usize] {
            for key in Key::REQUIRED {
                if self.config.seen[key as usize].is_none() {
                    self.error_at(
                        line,
                        column,
                        format!("the key `{}` in this `CONFIG` section", key.name()),
                        "",
                        None,
                    );
                }
            }
        }
        if let Some(graph) = self.config.graph_type {
            for key in Key::ALL {
                if let (Some((only, kind)), Some((line, column))) =
                    (key.only_for(), self.config.seen[key as usize])
                    && !only.contains(&graph)
                {
                    self.error_at(
                        line,
                        column,
                        format!("a key for this chart (`{}` is for {kind} only)", key.name()),
                        key.name(),
                        None,
                    );
                }
            }
        }
        self.check_label_counts();
        let openers = std::mem::take(&mut self.openers);
        for opener in &openers {
            let var = &self.rows[opener.row].ranges[opener.range].var;
            if !self.var_index.contains_key(var) {
                let var = var.clone();
                let hint = if self.diagnostics.len() < MAX_DIAGNOSTICS {
                    did_you_mean(&var, self.vars.iter().map(|v| v.name.as_str()))
                } else {
                    None
                };
                self.error_at(
                    opener.line,
                    opener.column,
                    "a variable defined in `VARS`",
                    &var,
                    hint,
                );
            }
        }
        if self.dropped > 0 {
            self.diagnostics.sort_by_key(|d| (d.line, d.column));
            let (line, column) = self
                .diagnostics
                .last()
                .map_or((1, 1), |d| (d.line, d.column));
            self.diagnostics.push(Diagnostic::new(
                line,
                column,
                format!(
                    "at most {MAX_DIAGNOSTICS} problems (MAX_DIAGNOSTICS); {} more not shown",
                    self.dropped
                ),
                "",
                None,
            ));
            return Err(Errors(self.diagnostics));
        }
        if !self.diagnostics.is_empty() {
            self.diagnostics.sort_by_key(|d| (d.line, d.column));
            return Err(Errors(self.diagnostics));
        }
        let draft = self.config;
        let (
            Some(image_size),
            Some(image_type),
            Some(graph_type),
            Some(default_material),
            Some(default_color),
            Some(floor_color),
        ) = (
            draft.image_size,
            draft.image_type,
            draft.graph_type,
            draft.default_material,
            draft.default_color,
            draft.floor_color,
        )
        else {
            // Unreachable: a missing or invalid required key has been reported above.
            return Err(Errors(vec![Diagnostic::new(
                1,
                1,
                "every required CONFIG key",
                "",
                None,
            )]));
        };
        let mut config = Config::new(
            image_size,
            image_type,
            graph_type,
            default_material,
            default_color,
            floor_color,
        );
        config.camera_type = draft.camera_type.unwrap_or_default();
        config.camera_transform = draft.camera_transform.unwrap_or_default();
        config.background_strength = draft
            .background_strength
            .unwrap_or(config.background_strength);
        config.bar_width = draft.bar_width.unwrap_or(config.bar_width);
        config.bar_separation = draft.bar_separation.unwrap_or(config.bar_separation);
        config.minimum_bar_height = draft
            .minimum_bar_height
            .unwrap_or(config.minimum_bar_height);
        config.cake_height = draft.cake_height.unwrap_or(config.cake_height);
        config.title = draft.title;
        config.x_labels = draft.x_labels.unwrap_or_default();
        config.z_labels = draft.z_labels.unwrap_or_default();
        config.labels = draft.labels.unwrap_or_default();
        config.value_labels = draft.value_labels == Some(Switch::On);
        config.axis = draft.axis == Some(Switch::On);
        config.legend = draft.legend == Some(Switch::On);
        config.text_color = draft.text_color.unwrap_or(config.text_color);
        if let Some(colors) = draft.surface_colors {
            config.surface_colors = colors;
        }
        let mut chart = Chart {
            config,
            vars: Vars { entries: self.vars },
            rows: self.rows,
        };
        chart.resolve_overrides();
        Ok(chart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("diffuse", "diffuse"), 0);
        assert_eq!(distance("dffuse", "diffuse"), 1);
        assert_eq!(distance("DIFUSE", "diffuse"), 1);
        assert_eq!(distance("", "end"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
