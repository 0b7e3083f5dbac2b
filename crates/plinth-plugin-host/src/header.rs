//! Reading and checking a plugin header, before any plugin function runs.

use plinth_abi::{PlStr, PluginHeader, ABI_MAJOR, ABI_MINOR, FLAG_LINKS_LIBTORCH, FLAG_PANIC_UNWIND, MAGIC};

/// A header's fields, copied out of the library.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderFields {
    pub magic: u64,
    pub header_size: u32,
    pub major: u32,
    pub minor: u32,
    pub flags: u32,
    pub id: String,
    pub version: String,
    pub fingerprint: String,
}

/// Copies the header out, reading the magic first and the rest only if it matches.
///
/// # Safety
/// `header` must be the address of the library's `plinth_plugin_header` symbol.
pub(crate) unsafe fn read_header(header: *const PluginHeader) -> Result<HeaderFields, String> {
    if header.is_null() {
        return Err("plinth_plugin_header is null".into());
    }
    // SAFETY: every header starts with its 8-byte magic.
    let magic = unsafe { std::ptr::read_unaligned(header.cast::<u64>()) };
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#018x} (plinth expects {MAGIC:#018x}); this is not a plinth plugin"));
    }
    // SAFETY: the magic says this is a plinth header; header_size says how much exists.
    let h = unsafe { &*header };
    if (h.header_size as usize) < std::mem::size_of::<PluginHeader>() {
        return Err(format!(
            "header is {} bytes, ABI {ABI_MAJOR}.x needs {}",
            h.header_size,
            std::mem::size_of::<PluginHeader>()
        ));
    }
    // SAFETY: header strings point at the library's static data.
    let text = |s: PlStr| unsafe { String::from_utf8_lossy(s.as_bytes()).into_owned() };
    Ok(HeaderFields {
        magic,
        header_size: h.header_size,
        major: h.abi_major,
        minor: h.abi_minor,
        flags: h.flags,
        id: text(h.id),
        version: text(h.version),
        fingerprint: text(h.fingerprint),
    })
}

/// Decides whether this host can load a plugin with `h`; the message names both
/// sides and what to rebuild with.
pub fn validate_header(h: &HeaderFields) -> Result<(), HeaderRefused> {
    header_problem(h).map_err(HeaderRefused)
}

/// Why a header was refused: both sides' versions and what to rebuild with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HeaderRefused(pub String);

fn header_problem(h: &HeaderFields) -> Result<(), String> {
    if h.magic != MAGIC {
        return Err(format!("bad magic {:#018x} (plinth expects {MAGIC:#018x})", h.magic));
    }
    if (h.header_size as usize) < std::mem::size_of::<plinth_abi::PluginHeader>() {
        return Err(format!(
            "header is {} bytes, ABI {ABI_MAJOR}.x needs {}",
            h.header_size,
            std::mem::size_of::<plinth_abi::PluginHeader>()
        ));
    }
    if h.major < ABI_MAJOR {
        return Err(format!(
            "plugin {} was built against plugin ABI {}.{}, older than this plinth's {ABI_MAJOR}.{ABI_MINOR}; rebuild it against the current plinth-plugin-sdk (ABI {ABI_MAJOR} speaks the typed protocol of plinth-plugin-protocol)",
            h.id, h.major, h.minor
        ));
    }
    if h.major > ABI_MAJOR {
        return Err(format!(
            "plugin {} speaks plugin ABI {}.{}, newer than this plinth's {ABI_MAJOR}.{ABI_MINOR}; update plinth, or build the plugin against a plinth-plugin-sdk for ABI {ABI_MAJOR}",
            h.id, h.major, h.minor
        ));
    }
    if h.flags & FLAG_PANIC_UNWIND == 0 {
        return Err(format!("plugin {} was built with panic = \"abort\"; plinth needs panic = \"unwind\" so a plugin panic cannot kill the host", h.id));
    }
    if h.flags & FLAG_LINKS_LIBTORCH != 0 && h.fingerprint != plinth_abi::torch_fingerprint() {
        return Err(format!(
            "plugin {} was built for libtorch `{}` but plinth runs `{}`; rebuild the plugin against the same tch and torch",
            h.id,
            h.fingerprint,
            plinth_abi::torch_fingerprint()
        ));
    }
    if h.id.is_empty() || !h.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(format!("plugin id {:?} must be non-empty ASCII letters, digits, - or _", h.id));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> HeaderFields {
        HeaderFields {
            magic: MAGIC,
            header_size: std::mem::size_of::<PluginHeader>() as u32,
            major: ABI_MAJOR,
            minor: ABI_MINOR,
            flags: FLAG_PANIC_UNWIND | FLAG_LINKS_LIBTORCH,
            id: "example".into(),
            version: "0.1.0".into(),
            fingerprint: plinth_abi::torch_fingerprint().into(),
        }
    }

    #[test]
    fn a_matching_header_passes() {
        validate_header(&good()).expect("compatible");
    }

    #[test]
    fn another_major_names_both_versions() {
        let err = validate_header(&HeaderFields { major: ABI_MAJOR + 1, minor: 3, ..good() }).expect_err("major").0;
        assert!(
            err.contains(&format!("{}.3", ABI_MAJOR + 1)) && err.contains(&format!("{ABI_MAJOR}.{ABI_MINOR}")),
            "{err}"
        );
    }

    #[test]
    fn an_older_major_is_told_to_rebuild_against_the_new_sdk() {
        let err = validate_header(&HeaderFields { major: ABI_MAJOR - 1, minor: 0, ..good() }).expect_err("old").0;
        assert!(err.contains("older") && err.contains("rebuild it against the current plinth-plugin-sdk"), "{err}");
        assert!(err.contains(&format!("{}.0", ABI_MAJOR - 1)), "{err}");
    }

    #[test]
    fn a_plugin_without_libtorch_needs_no_fingerprint() {
        validate_header(&HeaderFields { flags: FLAG_PANIC_UNWIND, fingerprint: String::new(), ..good() })
            .expect("no tensors, no fingerprint");
    }

    #[test]
    fn another_libtorch_names_both_fingerprints() {
        let err = validate_header(&HeaderFields { fingerprint: "tch=0.23.0;torch=2.10.0;cxx11abi=1".into(), ..good() })
            .expect_err("fp")
            .0;
        assert!(err.contains("torch=2.10.0") && err.contains(plinth_abi::torch_fingerprint()), "{err}");
    }

    #[test]
    fn bad_magic_and_abort_builds_are_refused() {
        assert!(validate_header(&HeaderFields { magic: 7, ..good() }).expect_err("magic").0.contains("magic"));
        assert!(validate_header(&HeaderFields { flags: FLAG_LINKS_LIBTORCH, ..good() })
            .expect_err("abort")
            .0
            .contains("unwind"));
    }
}
