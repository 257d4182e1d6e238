//! Bar charts as inline SVG, drawn on the server: no script, nothing fetched. Each chart has a
//! title and a description for screen readers, and its numbers are also in a table beside it.

use maud::{html, Markup};

/// The length of a bar of `value` when `max` has `length`.
fn scale(value: i64, max: i64, length: f64) -> f64 {
    if max <= 0 {
        0.0
    } else {
        value.max(0) as f64 / max as f64 * length
    }
}

/// A chart's figure: the SVG of `size` with its title and description, then `bars`.
fn frame(id: &str, title: &str, size: (f64, f64), desc: &str, bars: Markup) -> Markup {
    html! {
        figure.chart {
            svg #(id) role="img" viewBox=(format!("0 0 {} {}", size.0, size.1))
                aria-labelledby=(format!("{id}-title {id}-desc")) {
                title #(format!("{id}-title")) { (title) }
                desc #(format!("{id}-desc")) { (desc) }
                (bars)
            }
            figcaption { (title) }
        }
    }
}

/// One bar, with its label and value as data and as a tooltip.
fn bar(label: &str, value: i64, at: (f64, f64), size: (f64, f64)) -> Markup {
    html! {
        rect.bar x=(format!("{:.1}", at.0)) y=(format!("{:.1}", at.1))
            width=(format!("{:.1}", size.0)) height=(format!("{:.1}", size.1))
            data-label=(label) data-value=(value) {
            title { (label) "：" (value) }
        }
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
    let desc = format!("{} 项，合计 {total}，最多 {max}", items.len());
    let bars = html! {
        line.axis x1=(left) y1=(height - bottom) x2=(width - 10.0) y2=(height - bottom) {}
        text.tick x=(left - 6.0) y=(height - bottom - plot + 4.0) text-anchor="end" { (max) }
        text.tick x=(left - 6.0) y=(height - bottom) text-anchor="end" { "0" }
        @for (i, (label, value)) in items.iter().enumerate() {
            @let h = scale(*value, max, plot);
            @let x = left + i as f64 * step;
            (bar(label, *value, (x + step * 0.1, height - bottom - h), ((step * 0.8).max(1.0), h)))
            @if labelled(i) {
                text.tick x=(format!("{:.1}", x + step / 2.0)) y=(height - 10.0)
                    text-anchor="middle" { (label) }
            }
        }
    };
    frame(id, title, (width, height), &desc, bars)
}

/// Horizontal ranked bars, one row per item in order (most first), with the value at its end.
pub fn ranked(id: &str, title: &str, items: &[(String, i64)]) -> Markup {
    let (width, row, left) = (900.0, 26.0, 160.0);
    let height = 10.0 + row * items.len().max(1) as f64;
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let length = width - left - 60.0;
    let desc: String = items.iter().map(|(l, v)| format!("{l} {v}；")).collect();
    let bars = html! {
        @if items.is_empty() {
            text.tick x="10" y="24" { "无数据" }
        }
        @for (i, (label, value)) in items.iter().enumerate() {
            @let y = 5.0 + i as f64 * row;
            @let w = scale(*value, max, length);
            text.label x=(left - 8.0) y=(y + row * 0.65) text-anchor="end" { (label) }
            (bar(label, *value, (left, y + 3.0), (w, row - 8.0)))
            text.tick x=(format!("{:.1}", left + w + 6.0)) y=(y + row * 0.65) { (value) }
        }
    };
    frame(id, title, (width, height), &desc, bars)
}
