//! Reading a plugin's header from the library *file*, before anything maps or runs
//! it: the ELF is parsed as data (`object`), every loadable segment must lie inside
//! the file (a truncated file would fault the loader), and the exported
//! `plinth_plugin_header` symbol's bytes are read where the file stores them. The
//! header's strings are pointers, so their addresses come from the dynamic
//! relocation at each field (the addend of a `RELATIVE` entry) or, where the linker
//! packs relocations (`RELR`), from the word stored in place.

use object::read::{Object, ObjectSegment, ObjectSymbol, RelocationFlags};
use object::{Architecture, BinaryFormat};
use plinth_abi::{PluginHeader, MAGIC};

use crate::header::HeaderFields;

/// The header symbol's name, without the C string's terminator.
fn symbol_name() -> &'static [u8] {
    let s = plinth_abi::HEADER_SYMBOL;
    &s[..s.len() - 1]
}

/// The architecture this host runs on, as `object` names it.
fn host_architecture() -> Option<Architecture> {
    match std::env::consts::ARCH {
        "x86_64" => Some(Architecture::X86_64),
        "aarch64" => Some(Architecture::Aarch64),
        _ => None,
    }
}

/// Reads and decodes the plugin header stored in `bytes`, a whole library file.
/// Never runs or maps the file; any structural problem is an error saying what is
/// wrong with it.
pub fn header_from_file(bytes: &[u8]) -> Result<HeaderFields, String> {
    let file = object::File::parse(bytes).map_err(|e| {
        format!("is not a readable ELF shared library: it is damaged, truncated or not a library ({e})")
    })?;
    if file.format() != BinaryFormat::Elf {
        return Err(format!("is a {:?} file; plinth plugins are ELF shared libraries", file.format()));
    }
    if let Some(host) = host_architecture() {
        if file.architecture() != host || !file.is_64() {
            return Err(format!(
                "is built for {:?} ({}-bit); this plinth runs on {host:?}; rebuild the plugin for this machine",
                file.architecture(),
                if file.is_64() { 64 } else { 32 }
            ));
        }
    }
    let len = bytes.len() as u64;
    for seg in file.segments() {
        let (offset, size) = seg.file_range();
        if offset.checked_add(size).is_none_or(|end| end > len) {
            return Err(format!(
                "is truncated or damaged: a loadable segment needs bytes {offset}..{} but the file has {len}; rebuild or copy it again",
                offset.saturating_add(size)
            ));
        }
    }
    let symbol = file
        .dynamic_symbols()
        .find(|s| s.name_bytes().is_ok_and(|n| n == symbol_name()))
        .ok_or("not a plinth plugin (it exports no plinth_plugin_header symbol)")?;
    let base = symbol.address();
    let need = std::mem::size_of::<PluginHeader>() as u64;
    let raw = read_at(&file, base, 8).ok_or("the plinth_plugin_header symbol points outside the file's data")?;
    let magic = u64::from_le_bytes(word(raw));
    if magic != MAGIC {
        return Err(format!("bad magic {magic:#018x} (plinth expects {MAGIC:#018x}); this is not a plinth plugin"));
    }
    let raw = read_at(&file, base, need).ok_or_else(|| {
        format!("plinth_plugin_header is shorter than the {need} bytes of ABI {}.x", plinth_abi::ABI_MAJOR)
    })?;
    let u32_at = |off: usize| u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]]);
    let relocations = relative_targets(&file, base, need);
    let text = |field: &str, off: usize| -> Result<String, String> {
        let len = u64::from_le_bytes(word(&raw[off + 8..]));
        if len == 0 {
            return Ok(String::new());
        }
        if len > 4096 {
            return Err(format!("header field {field} claims {len} bytes"));
        }
        let ptr = relocations
            .iter()
            .find(|(at, _)| *at == base + off as u64)
            .map(|(_, target)| *target)
            .unwrap_or_else(|| u64::from_le_bytes(word(&raw[off..])));
        let bytes = read_at(&file, ptr, len).ok_or_else(|| format!("header field {field} points outside the file"))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("header field {field} is not UTF-8"))
    };
    use std::mem::offset_of;
    Ok(HeaderFields {
        magic,
        header_size: u32_at(offset_of!(PluginHeader, header_size)),
        major: u32_at(offset_of!(PluginHeader, abi_major)),
        minor: u32_at(offset_of!(PluginHeader, abi_minor)),
        flags: u32_at(offset_of!(PluginHeader, flags)),
        id: text("id", offset_of!(PluginHeader, id))?,
        version: text("version", offset_of!(PluginHeader, version))?,
        fingerprint: text("fingerprint", offset_of!(PluginHeader, fingerprint))?,
    })
}

fn word(b: &[u8]) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    w
}

/// `size` bytes at virtual address `address`, from the file-backed part of a segment.
fn read_at<'a>(file: &object::File<'a>, address: u64, size: u64) -> Option<&'a [u8]> {
    file.segments().find_map(|s| s.data_range(address, size).ok().flatten())
}

/// Targets of the `RELATIVE` dynamic relocations in `[base, base + size)`: the
/// address each pointer field will hold once loaded (minus the load base).
fn relative_targets(file: &object::File<'_>, base: u64, size: u64) -> Vec<(u64, u64)> {
    let relative = |r_type: object::elf::RelocationType| match file.architecture() {
        Architecture::X86_64 => r_type == object::elf::R_X86_64_RELATIVE,
        Architecture::Aarch64 => r_type == object::elf::R_AARCH64_RELATIVE,
        _ => false,
    };
    let Some(relocs) = file.dynamic_relocations() else { return Vec::new() };
    relocs
        .filter(|(at, _)| (base..base + size).contains(at))
        .filter_map(|(at, r)| match r.flags() {
            RelocationFlags::Elf { r_type } if relative(r_type) && !r.has_implicit_addend() => {
                Some((at, r.addend() as u64))
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_bytes_are_refused_not_read() {
        for bytes in [&b""[..], b"\x7fELF", b"not an ELF file", &[0u8; 4096]] {
            assert!(header_from_file(bytes).is_err());
        }
    }
}
