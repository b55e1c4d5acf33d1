//! Just enough DER: reading a header to recognise a PFX, writing a TLV to
//! rebuild small structures. Parsing proper is x509-parser's der-parser.

/// Tag and length of the DER element at the start of `bytes`: `(tag,
/// header length, content length)`. The content may run past the end of
/// `bytes` (a truncated file still has a recognisable header).
pub(crate) fn header(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)?;
    if first < 0x80 {
        return Some((tag, 2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None; // indefinite (BER) or absurd
    }
    let len = bytes
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Some((tag, 2 + n, len))
}

/// The version of a PKCS#12 PFX (`SEQUENCE { INTEGER version, ... }`), if
/// `bytes` starts like one.
pub(crate) fn pfx_version(bytes: &[u8]) -> Option<u8> {
    let (tag, hl, _) = header(bytes)?;
    if tag != 0x30 {
        return None;
    }
    match bytes.get(hl..hl + 3)? {
        [0x02, 0x01, v] => Some(*v),
        _ => None,
    }
}

/// What DER bytes that are not a PFX probably are, as an operator message.
pub(crate) fn describe_non_pfx(bytes: &[u8]) -> String {
    if x509_parser::parse_x509_certificate(bytes).is_ok() {
        return "this is a single DER-encoded certificate, not a keystore: a keystore holds \
                the private key too"
            .into();
    }
    let after_header = header(bytes).and_then(|(_, hl, _)| bytes.get(hl..hl + 4));
    match after_header {
        Some([0x02, 0x01, 0x00, 0x30]) => "this is a DER-encoded private key (PKCS#8), not a \
                                           keystore: convert it and the certificate to PEM and \
                                           use cert = and key = instead of keystore ="
            .into(),
        Some([0x02, 0x01, 0x00, 0x02]) | Some([0x02, 0x01, 0x01, 0x04]) => {
            "this is a DER-encoded private key, not a keystore: convert it and the certificate \
             to PEM and use cert = and key = instead of keystore ="
                .into()
        }
        _ => "this is DER (ASN.1) data but not a PKCS#12 (PFX) keystore".into(),
    }
}

/// Splits the DER element at the start of `bytes` into `(tag, content,
/// rest)`, checking that the content is all there. Only low tag numbers
/// (single-byte tags), which is all the structures here use.
pub(crate) fn split(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (tag, hl, len) = header(bytes)?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let end = hl.checked_add(len)?;
    Some((tag, bytes.get(hl..end)?, bytes.get(end..)?))
}

/// The elements of a constructed element's `content`, as `(tag, content)`;
/// `None` unless they exactly fill it.
pub(crate) fn elements(mut content: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (tag, inner, rest) = split(content)?;
        out.push((tag, inner));
        content = rest;
    }
    Some(out)
}

/// The one element `bytes` holds, as `(tag, content)`: `None` if anything
/// follows it.
pub(crate) fn single(bytes: &[u8]) -> Option<(u8, &[u8])> {
    match split(bytes)? {
        (tag, content, []) => Some((tag, content)),
        _ => None,
    }
}

/// One DER element: `tag`, definite length, `content`.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// DER `SEQUENCE` of already-encoded elements.
pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536, 1 << 20] {
            let enc = tlv(0x04, &vec![0xAB; len]);
            assert_eq!(header(&enc), Some((0x04, enc.len() - len, len)), "{len}");
        }
    }

    #[test]
    fn split_checks_bounds() {
        assert_eq!(
            split(&[0x04, 0x02, 1, 2, 9]),
            Some((0x04, &[1u8, 2][..], &[9u8][..]))
        );
        assert_eq!(split(&[0x04, 0x03, 1, 2]), None);
        assert_eq!(split(&[0x1f, 0x01, 0]), None);
        assert_eq!(single(&[0x04, 0x01, 1, 0]), None);
        assert_eq!(
            elements(&[0x02, 0x01, 0, 0x05, 0x00]),
            Some(vec![(0x02, &[0u8][..]), (0x05, &[][..])])
        );
        assert_eq!(elements(&[0x02, 0x01]), None);
    }

    #[test]
    fn header_never_panics_on_short_input() {
        for b in [
            &[][..],
            &[0x30],
            &[0x30, 0x82],
            &[0x30, 0x82, 0x01],
            &[0x30, 0x80],
        ] {
            let _ = header(b);
            let _ = pfx_version(b);
            let _ = describe_non_pfx(b);
        }
    }
}
