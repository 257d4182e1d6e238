//! Bar charts as inline SVG, drawn on the server: no script, nothing fetched. Each chart has a
//! title and a description for screen readers, and its numbers are also in a table beside it.

use maud::{html, Markup};

/// The tallest bar (or the longest) for `max`, at least 1 so an empty chart draws.
fn scale(value: i64, max: i64, length: f64) -> f64 {
    if max <= 0 {
        0.0
    } else {
        value.max(0) as f64 / max as f64 * length
    }
}

/// Vertical bars, one per item in order (e.g. one per day), labelled at the first, middle and
/// last item.
pub fn columns(id: &str, title: &str, items: &[(String, i64)]) -> Markup {
    let (width, height, left, bottom) = (900.0, 220.0, 40.0, 30.0);
    let plot = height - bottom - 10.0;
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let step = if items.is_empty() {
        0.0
    } else {
        (width - left - 10.0) / items.len() as f64
    };
    let total: i64 = items.iter().map(|(_, v)| *v).sum();
    let labelled = |i: usize| i == 0 || i + 1 == items.len() || i == items.len() / 2;
    html! {
        figure.chart {
            svg #(id) role="img" viewBox=(format!("0 0 {width} {height}"))
                aria-labelledby=(format!("{id}-title {id}-desc")) {
                title #(format!("{id}-title")) { (title) }
                desc #(format!("{id}-desc")) {
                    (items.len()) " 项，合计 " (total) "，最多 " (max)
                }
                line x1=(left) y1=(height - bottom) x2=(width - 10.0) y2=(height - bottom)
                    class="axis" {}
                text x=(left - 6.0) y=(height - bottom - plot + 4.0) class="tick" text-anchor="end" { (max) }
                text x=(left - 6.0) y=(height - bottom) class="tick" text-anchor="end" { "0" }
                @for (i, (label, value)) in items.iter().enumerate() {
                    @let h = scale(*value, max, plot);
                    rect.bar x=(format!("{:.1}", left + i as f64 * step + step * 0.1))
                        y=(format!("{:.1}", height - bottom - h))
                        width=(format!("{:.1}", (step * 0.8).max(1.0)))
                        height=(format!("{h:.1}")) data-label=(label) data-value=(value) {
                        title { (label) "：" (value) }
                    }
                    @if labelled(i) {
                        text x=(format!("{:.1}", left + i as f64 * step + step / 2.0))
                            y=(height - 10.0) class="tick" text-anchor="middle" { (label) }
                    }
                }
            }
            figcaption { (title) }
        }
    }
}

/// Horizontal ranked bars, one row per item in order (most first), with the value at its end.
pub fn ranked(id: &str, title: &str, items: &[(String, i64)]) -> Markup {
    let (width, row, left) = (900.0, 26.0, 160.0);
    let height = 10.0 + row * items.len().max(1) as f64;
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let length = width - left - 60.0;
    html! {
        figure.chart {
            svg #(id) role="img" viewBox=(format!("0 0 {width} {height}"))
                aria-labelledby=(format!("{id}-title {id}-desc")) {
                title #(format!("{id}-title")) { (title) }
                desc #(format!("{id}-desc")) {
                    @for (label, value) in items { (label) " " (value) "；" }
                }
                @if items.is_empty() {
                    text x="10" y="24" class="tick" { "无数据" }
                }
                @for (i, (label, value)) in items.iter().enumerate() {
                    @let y = 5.0 + i as f64 * row;
                    @let w = scale(*value, max, length);
                    text x=(left - 8.0) y=(y + row * 0.65) class="label" text-anchor="end" { (label) }
                    rect.bar x=(left) y=(y + 3.0) width=(format!("{w:.1}")) height=(row - 8.0)
                        data-label=(label) data-value=(value) {
                        title { (label) "：" (value) }
                    }
                    text x=(format!("{:.1}", left + w + 6.0)) y=(y + row * 0.65) class="tick" { (value) }
                }
            }
            figcaption { (title) }
        }
    }
}
