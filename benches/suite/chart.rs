//! SVG charts for `BENCHMARKS.md`: one horizontal grouped bar chart per benchmark
//! family, each bar a competitor's median with a thin min–max whisker over it.
//!
//! The SVG is written by hand: plotters' SVG backend does render text without system
//! fonts and pulls in only four small crates, but it has no horizontal grouped-bar
//! layout, so the labels, headings, whiskers and values would be placed by hand
//! anyway, and a small writer keeps the files compact and stable under diff with no
//! new dependency.
//!
//! Text metrics are estimated from the character count (a generous average advance
//! per glyph), so the layout does not depend on which fonts the viewer has.
//! Colours are fixed per competitor: the same label has the same colour in every chart.

use std::fmt::Write as _;

/// One bar: a competitor's median with its min–max whisker.
pub struct Bar {
    pub label: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// Bars drawn together under one heading (e.g. "64 B" or "100 connections, 8 in flight").
pub struct Group {
    pub name: String,
    pub bars: Vec<Bar>,
}

/// A whole chart.
pub struct Chart {
    pub title: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub groups: Vec<Group>,
}

// Layout, in SVG user units (pixels).
const MIN_WIDTH: f64 = 760.0;
const MARGIN: f64 = 16.0;
const FONT: f64 = 12.0;
const TITLE_FONT: f64 = 16.0;
const HEADING_FONT: f64 = 13.0;
/// Average advance of a glyph, in em: generous for sans-serif fonts (DejaVu Sans, the
/// widest common fallback, averages about 0.6 on digits and lower case).
const CHAR_EM: f64 = 0.62;
const BOLD_CHAR_EM: f64 = 0.68;
const BAR_HEIGHT: f64 = 16.0;
const ROW_HEIGHT: f64 = 24.0;
const HEADING_HEIGHT: f64 = 24.0;
const GROUP_GAP: f64 = 8.0;
const WHISKER_CAP: f64 = 5.0;
const MIN_PLOT_WIDTH: f64 = 320.0;
const MAX_LABEL_CHARS: usize = 32;
const MAX_TITLE_CHARS: usize = 100;

const FONT_FAMILY: &str = "Helvetica, Arial, 'DejaVu Sans', sans-serif";
const TEXT: &str = "#222222";
const MUTED: &str = "#666666";
const GRID: &str = "#e3e3e3";
const AXIS: &str = "#999999";
const WHISKER: &str = "#222222";

/// sockloop's colour: the one strong colour in every chart.
pub const SOCKLOOP_COLOUR: &str = "#e8590c";

/// The competitors' fixed colours.
const KNOWN: &[(&str, &str)] = &[
    ("sockloop", SOCKLOOP_COLOUR),
    ("mio", "#4c72b0"),
    ("mio-map", "#8fa9d6"),
    ("tokio", "#55a868"),
    ("message-io", "#8172b2"),
    ("std", "#8c8c8c"),
];

/// Colours for labels that are no known competitor nor a variant of one, chosen by a
/// hash of the label; none of them is a competitor's colour.
const PALETTE: &[&str] = &[
    "#ccb974", "#64b5cd", "#937860", "#da8bc3", "#2a9d8f", "#b07aa1", "#9c755f", "#76b7b2",
];

/// How much lighter a variant ("tokio write_all") is than its competitor ("tokio").
const VARIANT_TINTS: &[f64] = &[0.35, 0.5, 0.65];

/// The fill colour for a bar label, as `#rrggbb`: a competitor's fixed colour, a
/// lighter shade of it for a variant (the competitor's name, then a space, `(`, `/` or
/// `:` and more), or a palette colour chosen by a hash of the label.
pub fn colour(label: &str) -> String {
    let label = label.trim();
    if let Some((_, c)) = KNOWN.iter().find(|(name, _)| *name == label) {
        return c.to_string();
    }
    for (name, c) in KNOWN {
        if let Some(rest) = label.strip_prefix(name) {
            if rest.starts_with([' ', '(', '/', ':']) {
                let tint = VARIANT_TINTS[(fnv1a(rest) % VARIANT_TINTS.len() as u64) as usize];
                return lighten(c, tint);
            }
        }
    }
    PALETTE[(fnv1a(label) % PALETTE.len() as u64) as usize].to_string()
}

/// sockloop and its variants are drawn with bold labels.
fn is_sockloop(label: &str) -> bool {
    let label = label.trim();
    label == "sockloop"
        || label
            .strip_prefix("sockloop")
            .is_some_and(|rest| rest.starts_with([' ', '(', '/', ':']))
}

/// FNV-1a: a hash that is the same on every platform and every Rust release.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Mixes `#rrggbb` with white: `amount` 0 keeps the colour, 1 gives white.
fn lighten(hex: &str, amount: f64) -> String {
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0);
    let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * amount).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(channel(1)),
        mix(channel(3)),
        mix(channel(5))
    )
}

/// A value for a label: three significant digits, k/M/G above a thousand, "–" for NaN
/// or an infinity. `1234.5` → "1.23k", `46487.0` → "46.5k", `18.64` → "18.6", `0.0` → "0".
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let r = round_significant(v, 3);
    let a = r.abs();
    if a < 1e-3 {
        return format!("{r:.2e}");
    }
    let (scaled, suffix) = if a >= 1e9 {
        (r / 1e9, "G")
    } else if a >= 1e6 {
        (r / 1e6, "M")
    } else if a >= 1e3 {
        (r / 1e3, "k")
    } else {
        (r, "")
    };
    let digits = scaled.abs().log10().floor() as i32;
    let decimals = (2 - digits).clamp(0, 6) as usize;
    let mut s = format!("{scaled:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let (sign, digits) = match s.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", s.as_str()),
    };
    format!("{sign}{}{suffix}", group_thousands(digits))
}

fn round_significant(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    let r = (v * scale).round() / scale;
    if r.is_finite() {
        r
    } else {
        v
    }
}

/// "1234567.5" → "1,234,567.5" (only reached for values of a trillion and more).
fn group_thousands(digits: &str) -> String {
    let (int, frac) = digits.split_once('.').map_or((digits, ""), |(i, f)| (i, f));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// The axis for values up to `max`: a nice step (1, 2, 2.5 or 5 times a power of ten)
/// and the number of steps (3 to 5) that reach at least `max`.
fn axis(max: f64) -> (f64, usize) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|&s| s * magnitude >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0)
        * magnitude;
    if !(step.is_finite() && step > 0.0) {
        return (max, 1);
    }
    let steps = (max / step * (1.0 - 1e-9)).ceil().clamp(1.0, 10.0) as usize;
    (step, steps)
}

/// Text for XML content and attribute values: `& < > "` escaped, and control
/// characters (which XML 1.0 does not allow) replaced by spaces.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, the last an ellipsis when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn text_width(s: &str, size: f64, bold: bool) -> f64 {
    let em = if bold { BOLD_CHAR_EM } else { CHAR_EM };
    s.chars().count() as f64 * size * em
}

/// A coordinate: one decimal, no trailing ".0", and 0 for anything not finite.
fn n(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    let s = format!("{v:.1}");
    match s.strip_suffix(".0") {
        Some("-0") => "0".to_string(),
        Some(i) => i.to_string(),
        None => s,
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

impl Chart {
    /// The chart as a standalone SVG document.
    pub fn to_svg(&self) -> String {
        let title = truncate(self.title.trim(), MAX_TITLE_CHARS);
        let bars = || self.groups.iter().flat_map(|g| g.bars.iter());

        // Horizontal layout: labels | plot | room for the value after the longest bar.
        let label = |b: &Bar| truncate(b.label.trim(), MAX_LABEL_CHARS);
        let label_width = bars()
            .map(|b| text_width(&label(b), FONT, is_sockloop(&b.label)))
            .fold(text_width("no data", FONT, false), f64::max);
        let value_width = bars()
            .map(|b| text_width(&format_value(b.median), FONT, false))
            .fold(text_width("0", FONT, false), f64::max);
        let plot_left = MARGIN + label_width + 10.0;
        let width = (plot_left + MIN_PLOT_WIDTH + 6.0 + value_width + MARGIN)
            .max(MIN_WIDTH)
            .max(text_width(&title, TITLE_FONT, true) + 2.0 * MARGIN)
            .ceil();
        let plot_right = width - MARGIN - value_width - 6.0;
        let plot_width = plot_right - plot_left;

        let largest = bars()
            .flat_map(|b| [b.median, b.min, b.max])
            .filter_map(finite)
            .fold(0.0, f64::max);
        let (step, steps) = axis(largest);
        let axis_max = step * steps as f64;
        let x = |v: f64| {
            let f = if axis_max > 0.0 && axis_max.is_finite() {
                (v / axis_max).clamp(0.0, 1.0)
            } else {
                0.0
            };
            plot_left + f * plot_width
        };

        // Vertical layout.
        let title_y = MARGIN + TITLE_FONT;
        let subtitle_y = title_y + 18.0;
        let plot_top = subtitle_y + 12.0;
        let mut body = String::new();
        let mut y = plot_top;
        let heading_chars = ((width - 2.0 * MARGIN) / (HEADING_FONT * BOLD_CHAR_EM)) as usize;
        let no_data = |body: &mut String, y: f64| {
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" text-anchor="end" fill="{MUTED}" font-style="italic">no data</text>"#,
                n(plot_left - 8.0),
                n(y + ROW_HEIGHT / 2.0 + 4.0)
            );
        };
        // The vertical extents of the bar rows: gridlines stop short of the headings.
        let mut spans: Vec<(f64, f64)> = Vec::new();
        if self.groups.is_empty() {
            no_data(&mut body, y);
            spans.push((y, y + ROW_HEIGHT));
            y += ROW_HEIGHT;
        }
        for group in &self.groups {
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" font-size="{HEADING_FONT}" font-weight="bold" fill="{TEXT}">{}</text>"#,
                n(MARGIN),
                n(y + 17.0),
                escape(&truncate(group.name.trim(), heading_chars))
            );
            y += HEADING_HEIGHT;
            let rows_top = y;
            if group.bars.is_empty() {
                no_data(&mut body, y);
                y += ROW_HEIGHT;
            }
            for bar in &group.bars {
                let cy = y + ROW_HEIGHT / 2.0;
                let weight = if is_sockloop(&bar.label) {
                    r#" font-weight="bold""#
                } else {
                    ""
                };
                let _ = writeln!(
                    body,
                    r#"<text x="{}" y="{}" text-anchor="end" fill="{TEXT}"{weight}>{}</text>"#,
                    n(plot_left - 8.0),
                    n(cy + 4.0),
                    escape(&label(bar))
                );
                let median = finite(bar.median);
                let mut end = plot_left;
                if let Some(m) = median {
                    end = x(m);
                    let _ = writeln!(
                        body,
                        r#"<rect x="{}" y="{}" width="{}" height="{BAR_HEIGHT}" fill="{}"><title>{}</title></rect>"#,
                        n(plot_left),
                        n(cy - BAR_HEIGHT / 2.0),
                        n(end - plot_left),
                        colour(&bar.label),
                        escape(&format!(
                            "{}: {} ({}–{}) {}",
                            bar.label.trim(),
                            format_value(bar.median),
                            format_value(bar.min),
                            format_value(bar.max),
                            self.unit
                        ))
                    );
                }
                if let (Some(a), Some(b)) = (finite(bar.min), finite(bar.max)) {
                    // min > max (or > median) is drawn as the range it spans.
                    let (lo, hi) = (x(a.min(b)), x(a.max(b)));
                    end = end.max(hi);
                    let _ = writeln!(
                        body,
                        r#"<path d="M{lo} {cy}H{hi}M{lo} {top}V{bottom}M{hi} {top}V{bottom}" stroke="{WHISKER}" stroke-width="1.2" fill="none"/>"#,
                        lo = n(lo),
                        hi = n(hi),
                        cy = n(cy),
                        top = n(cy - WHISKER_CAP),
                        bottom = n(cy + WHISKER_CAP),
                    );
                }
                let _ = writeln!(
                    body,
                    r#"<text x="{}" y="{}" fill="{TEXT}">{}</text>"#,
                    n(end + 6.0),
                    n(cy + 4.0),
                    escape(&format_value(bar.median))
                );
                y += ROW_HEIGHT;
            }
            y += GROUP_GAP;
            spans.push((rows_top, y));
        }
        let plot_bottom = y;
        let height = (plot_bottom
            + if self.unit.trim().is_empty() {
                30.0
            } else {
                48.0
            })
        .ceil();

        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT_FAMILY}" font-size="{FONT}" role="img">"#,
            w = n(width),
            h = n(height)
        );
        let _ = writeln!(svg, "<title>{}</title>", escape(&title));
        let _ = writeln!(
            svg,
            r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" font-size="{TITLE_FONT}" font-weight="bold" fill="{TEXT}">{}</text>"#,
            n(MARGIN),
            n(title_y),
            escape(&title)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" fill="{MUTED}">{}</text>"#,
            n(MARGIN),
            n(subtitle_y),
            if self.higher_is_better {
                "higher is better"
            } else {
                "lower is better"
            }
        );
        // Gridlines and tick labels first, so bars and whiskers are drawn over them.
        for i in 0..=steps {
            let gx = plot_left + plot_width * i as f64 / steps as f64;
            let mut d = String::new();
            for (top, bottom) in &spans {
                let _ = write!(d, "M{} {}V{}", n(gx), n(*top), n(*bottom));
            }
            let _ = write!(d, "M{} {}V{}", n(gx), n(plot_bottom), n(plot_bottom + 4.0));
            let _ = writeln!(
                svg,
                r#"<path d="{d}" stroke="{}" stroke-width="1" fill="none"/>"#,
                if i == 0 { AXIS } else { GRID },
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
                n(gx),
                n(plot_bottom + 17.0),
                escape(&format_value(step * i as f64))
            );
        }
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{AXIS}" stroke-width="1"/>"#,
            n(plot_left),
            n(plot_right),
            y = n(plot_bottom),
        );
        if !self.unit.trim().is_empty() {
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" text-anchor="middle" fill="{TEXT}">{}</text>"#,
                n(plot_left + plot_width / 2.0),
                n(plot_bottom + 36.0),
                escape(self.unit.trim())
            );
        }
        svg.push_str(&body);
        svg.push_str("</svg>\n");
        svg
    }
}

/// Renders charts with every edge case the writer must survive and checks that the
/// SVG is well formed; panics otherwise. Run by `cargo bench -p sockloop-bench --bench suite -- --quick`
/// (a `harness = false` target has no unit tests).
pub fn self_check() {
    let bar = |label: &str, median: f64, min: f64, max: f64| Bar {
        label: label.to_string(),
        median,
        min,
        max,
    };
    let normal = |name: &str| Group {
        name: name.to_string(),
        bars: vec![
            bar("sockloop", 48756.0, 47912.0, 50777.0),
            bar("mio", 47796.0, 44174.0, 52776.0),
            bar("tokio", 48959.0, 45546.0, 50964.0),
            bar("tokio write_all", 45000.0, 44000.0, 46000.0),
            bar("message-io", 30000.0, 29000.0, 31000.0),
            bar("std", 51276.0, 49985.0, 54781.0),
        ],
    };
    let charts = [
        Chart {
            title: "B1 <ping & pong> \"quoted\"".to_string(),
            unit: "round trips/s & <µs>".to_string(),
            higher_is_better: true,
            groups: vec![
                normal("64 B"),
                Group {
                    name: String::new(),
                    bars: Vec::new(),
                },
                Group {
                    name: "one bar".to_string(),
                    bars: vec![bar("sockloop", 1.0, 1.0, 1.0)],
                },
                Group {
                    name: "edge & <cases>".to_string(),
                    bars: vec![
                        bar("nan median", f64::NAN, 1.0, 2.0),
                        bar("nan whisker", 5.0, f64::NAN, f64::NAN),
                        bar("all nan", f64::NAN, f64::NAN, f64::NAN),
                        bar("min > median", 3.0, 4.0, 6.0),
                        bar("min > max", 3.0, 6.0, 2.0),
                        bar("zero", 0.0, 0.0, 0.0),
                        bar("negative", -5.0, -7.0, -1.0),
                        bar("infinite", f64::INFINITY, 1.0, f64::NEG_INFINITY),
                        bar("<b>\"x\" & 'y'</b>\u{1}\t", 2.0, 1.0, 3.0),
                        bar(&"very long label ".repeat(8), 2.0, 1.0, 3.0),
                        bar("", 1.0, 1.0, 1.0),
                    ],
                },
            ],
        },
        Chart {
            title: "all zero".to_string(),
            unit: String::new(),
            higher_is_better: false,
            groups: vec![Group {
                name: "zero".to_string(),
                bars: vec![bar("sockloop", 0.0, 0.0, 0.0), bar("std", 0.0, 0.0, 0.0)],
            }],
        },
        Chart {
            title: "only NaN".to_string(),
            unit: "µs".to_string(),
            higher_is_better: false,
            groups: vec![Group {
                name: "nan".to_string(),
                bars: vec![bar("mio", f64::NAN, f64::NAN, f64::NAN)],
            }],
        },
        Chart {
            title: String::new(),
            unit: String::new(),
            higher_is_better: true,
            groups: Vec::new(),
        },
        Chart {
            title: "huge and tiny".to_string(),
            unit: "bytes".to_string(),
            higher_is_better: false,
            groups: vec![Group {
                name: "range".to_string(),
                bars: vec![
                    bar("big", 1.5e300, 1e300, 1.7e308),
                    bar("tiny", 1e-310, 0.0, 1e-300),
                ],
            }],
        },
    ];
    for chart in &charts {
        let svg = chart.to_svg();
        check_well_formed(&svg);
        assert_eq!(
            svg.matches("<text").count(),
            svg.matches("</text>").count(),
            "unbalanced <text> in {svg}"
        );
    }
    let svg = charts[0].to_svg();
    assert!(svg.contains("higher is better"));
    assert!(charts[1].to_svg().contains("lower is better"));
    assert!(svg.contains(&format!(r#"fill="{SOCKLOOP_COLOUR}""#)));
    assert!(svg.contains(">–</text>"), "a NaN median prints a dash");
    assert!(svg.contains("B1 &lt;ping &amp; pong&gt; &quot;quoted&quot;"));
    assert_eq!(svg, charts[0].to_svg(), "rendering is deterministic");

    // Colours: fixed per competitor, variants a shade of their competitor, others hashed.
    assert_eq!(colour("sockloop"), SOCKLOOP_COLOUR);
    assert_eq!(colour("tokio"), colour(" tokio "));
    assert_ne!(colour("tokio write_all"), colour("tokio"));
    assert_eq!(colour("tokio write_all"), colour("tokio write_all"));
    for name in ["mio", "mio-map", "tokio", "message-io", "std"] {
        assert_ne!(colour(name), SOCKLOOP_COLOUR);
    }
    assert!(PALETTE.contains(&colour("someone else").as_str()));
    assert!(PALETTE.contains(&colour("tokiox").as_str()));

    // Numbers.
    for (v, s) in [
        (0.0, "0"),
        (-0.0, "0"),
        (f64::NAN, "–"),
        (f64::INFINITY, "–"),
        (1.0, "1"),
        (18.64, "18.6"),
        (0.25, "0.25"),
        (999.0, "999"),
        (999.7, "1k"),
        (1234.5, "1.23k"),
        (2500.0, "2.5k"),
        (46487.0, "46.5k"),
        (374.0, "374"),
        (1_250_000.0, "1.25M"),
        (-4608.0, "-4.61k"),
        (3.2e12, "3,200G"),
    ] {
        assert_eq!(format_value(v), s, "format_value({v})");
    }
    for (max, step, steps) in [
        (0.0, 0.2, 5),
        (1.0, 0.2, 5),
        (54781.0, 20000.0, 3),
        (50000.0, 10000.0, 5),
        (4608.0, 1000.0, 5),
        (7.0, 2.0, 4),
    ] {
        let (s, k) = axis(max);
        assert!(
            (s - step).abs() < 1e-9 * step && k == steps,
            "axis({max}) = ({s}, {k})"
        );
        assert!(s * k as f64 >= max);
    }
}

/// Checks that `svg` is one `<svg>` element whose tags balance, whose text and
/// attribute values escape `&`, `<` and `>`, and whose attributes hold no NaN or
/// infinity.
fn check_well_formed(svg: &str) {
    assert!(svg.starts_with("<svg "), "does not start with <svg: {svg}");
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "does not end with </svg>"
    );
    let mut open: Vec<&str> = Vec::new();
    let mut rest = svg;
    let mut roots = 0;
    while let Some(start) = rest.find('<') {
        check_text(&rest[..start]);
        let end = start
            + rest[start..]
                .find('>')
                .unwrap_or_else(|| panic!("unclosed tag in {svg}"));
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            let top = open
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(top, name, "<{top}> closed by </{name}>");
        } else {
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
            let name = &tag[..name_end];
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
                "bad tag name in <{tag}>"
            );
            if open.is_empty() {
                roots += 1;
            }
            check_attributes(&tag[name_end..]);
            if !self_closing {
                open.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    check_text(rest);
    assert!(open.is_empty(), "unclosed: {open:?}");
    assert_eq!(roots, 1, "more than one root element");
}

fn check_attributes(mut attrs: &str) {
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            return;
        }
        let (name, after) = attrs
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad attribute in {attrs}"));
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'),
            "bad attribute name {name:?}"
        );
        let (value, after) = after
            .split_once('"')
            .unwrap_or_else(|| panic!("unterminated attribute {name}"));
        check_text(value);
        assert!(
            !value.contains("NaN") && !value.contains("inf"),
            "{name}=\"{value}\""
        );
        attrs = after;
    }
}

/// No raw `<` or `>`, and every `&` starts an entity.
fn check_text(text: &str) {
    assert!(!text.contains(['<', '>']), "unescaped < or > in {text:?}");
    for (i, _) in text.match_indices('&') {
        let entity = &text[i + 1..];
        let ok = ["amp;", "lt;", "gt;", "quot;", "apos;"]
            .iter()
            .any(|e| entity.starts_with(e))
            || entity.strip_prefix('#').is_some_and(|e| {
                let digits = e.chars().take_while(char::is_ascii_digit).count();
                digits > 0 && e[digits..].starts_with(';')
            });
        assert!(ok, "unescaped & in {text:?}");
    }
}
