//! QR codes as SVG, for pages to show inline or serve as images.

/// The QR code of `text` as an SVG document at least `min_px` pixels wide (no XML declaration,
/// so it can sit inside HTML); `None` when the text is too long for a QR code.
pub fn svg(text: &str, min_px: u32) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code.render::<qrcode::render::svg::Color>().min_dimensions(min_px, min_px).build();
    let start = svg.find("<svg").unwrap_or(0);
    Some(svg[start..].to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_svg_starts_at_its_element() {
        let svg = super::svg("weixin://wxpay/bizpayurl?pr=abc", 200).expect("a QR code");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
    }
}
