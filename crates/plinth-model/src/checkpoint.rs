//! Weights as safetensors, keyed by parameter path, written atomically.
//!
//! A checkpoint directory holds `model.safetensors` and `model.json` (the
//! [`ModelConfig`]); the trainer adds the tokenizer and its own state beside them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tch::{nn, Kind, Tensor};

use crate::{ModelConfig, ModelError, Result};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "model.json";

/// Writes every variable of `vs` to `path` as safetensors. The file appears
/// complete or not at all: it is written beside its destination and renamed.
pub fn save_tensors(named: &[(String, Tensor)], path: &Path) -> Result<()> {
    let tmp = tmp_path(path);
    Tensor::write_safetensors(named, &tmp)
        .map_err(|e| ModelError::Checkpoint { path: path.to_path_buf(), message: e.to_string() })?;
    std::fs::rename(&tmp, path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })
}

/// All variables of a store, sorted by name.
pub fn named_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Loads `path` into the variables of `vs`, requiring the same names and shapes:
/// a missing, unexpected or mis-shaped tensor is an error that names it. Tensors
/// are read one at a time ([`SafetensorsReader`]), so loading needs memory for the
/// model and one tensor, not for a second copy of the file.
pub fn load_into(vs: &mut nn::VarStore, path: &Path) -> Result<()> {
    let err = |message: String| ModelError::Checkpoint { path: path.to_path_buf(), message };
    let mut file = SafetensorsReader::open(path)?;
    let mut vars = vs.variables();
    let file_keys: BTreeSet<String> = file.names().map(str::to_string).collect();
    let missing: Vec<&String> = vars.keys().filter(|k| !file_keys.contains(k.as_str())).collect();
    if !missing.is_empty() {
        return Err(err(format!("missing tensors {missing:?}; was it saved from a model with this config?")));
    }
    let unexpected: Vec<&String> = file_keys.iter().filter(|k| !vars.contains_key(k.as_str())).collect();
    if !unexpected.is_empty() {
        return Err(err(format!("unexpected tensors {unexpected:?}; was it saved from a model with this config?")));
    }
    tch::no_grad(|| {
        for (name, dst) in vars.iter_mut() {
            let shape = file.shape(name).unwrap_or_default();
            if dst.size() != shape {
                return Err(err(format!("tensor {name} has shape {shape:?}, the model expects {:?}", dst.size())));
            }
            // plinth saves each variable in its own dtype: another one means the
            // file was edited or relabelled, and its bytes would load as junk.
            let stored = file.kind(name).unwrap_or(dst.kind());
            if stored != dst.kind() {
                return Err(err(format!(
                    "tensor {name} is stored as {}, the model expects {}; the file was not written by plinth for this model (import foreign weights with `plinth import`)",
                    dtype_name(stored),
                    dtype_name(dst.kind())
                )));
            }
            file.read_into(name, dst)?;
        }
        Ok(())
    })
}

/// Largest slab [`SafetensorsReader::read_into`] holds in memory at once.
const READ_CHUNK_BYTES: u64 = 16 << 20;

/// One tensor's place in a safetensors file.
#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    shape: Vec<i64>,
    start: u64,
    end: u64,
}

impl Entry {
    /// Bytes of one slice along the first dimension (the whole tensor for a scalar).
    fn row_bytes(&self) -> u64 {
        (self.end - self.start) / self.shape.first().copied().unwrap_or(1).max(1) as u64
    }
}

/// A safetensors file opened for reading one tensor at a time: only the JSON
/// header is read when it is opened.
#[derive(Debug)]
pub struct SafetensorsReader {
    path: PathBuf,
    file: std::fs::File,
    entries: BTreeMap<String, Entry>,
    data_start: u64,
}

impl SafetensorsReader {
    /// Opens `path` and parses its header; a file that is not safetensors is an
    /// error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        let err = |message: String| ModelError::Checkpoint { path: path.to_path_buf(), message };
        let mut file =
            std::fs::File::open(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|e| err(format!("not a safetensors file: {e}")))?;
        let n = u64::from_le_bytes(len);
        if n > 100_000_000 || n + 8 > file_len {
            return Err(err(format!("not a safetensors file (header of {n} bytes in a file of {file_len})")));
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header).map_err(|e| err(format!("truncated safetensors header: {e}")))?;
        let json: serde_json::Value =
            serde_json::from_slice(&header).map_err(|e| err(format!("safetensors header is not JSON: {e}")))?;
        let obj = json.as_object().ok_or_else(|| err("safetensors header is not an object".into()))?;
        let data_start = 8 + n;
        let mut entries = BTreeMap::new();
        for (name, v) in obj.iter().filter(|(k, _)| k.as_str() != "__metadata__") {
            let bad = |what: &str| err(format!("tensor {name}: {what}"));
            let dtype = v.get("dtype").and_then(|d| d.as_str()).ok_or_else(|| bad("no dtype"))?;
            let kind = match dtype {
                "F64" => Kind::Double,
                "F32" => Kind::Float,
                "F16" => Kind::Half,
                "BF16" => Kind::BFloat16,
                "I64" => Kind::Int64,
                "I32" => Kind::Int,
                "I16" => Kind::Int16,
                "I8" => Kind::Int8,
                "U8" => Kind::Uint8,
                "BOOL" => Kind::Bool,
                other => return Err(bad(&format!("dtype {other} is not supported"))),
            };
            let shape: Vec<i64> = v
                .get("shape")
                .and_then(|s| s.as_array())
                .ok_or_else(|| bad("no shape"))?
                .iter()
                .map(|d| d.as_i64().ok_or_else(|| bad("shape is not integers")))
                .collect::<Result<_>>()?;
            let offsets: Vec<u64> = v
                .get("data_offsets")
                .and_then(|s| s.as_array())
                .map(|a| a.iter().filter_map(|o| o.as_u64()).collect())
                .unwrap_or_default();
            let [start, end] = offsets[..] else { return Err(bad("no data_offsets")) };
            let bytes = shape.iter().product::<i64>() as u64 * kind.elt_size_in_bytes() as u64;
            if end < start || end - start != bytes || data_start + end > file_len {
                return Err(bad("data_offsets do not match its dtype and shape, or lie past the end of the file"));
            }
            entries.insert(name.clone(), Entry { kind, shape, start, end });
        }
        Ok(SafetensorsReader { path: path.to_path_buf(), file, entries, data_start })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<Vec<i64>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    /// The dtype a tensor is stored in.
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.entries.get(name).map(|e| e.kind)
    }

    /// Copies one tensor into `dst` (same shape; any floating dtype into a
    /// floating `dst`, the same dtype otherwise; any device), in slabs of whole rows
    /// of at most [`READ_CHUNK_BYTES`], so a large embedding never exists twice in
    /// memory. A NaN or infinite value is refused, naming the tensor, and so is an
    /// integer tensor read into floating weights. Call it without gradient tracking.
    pub fn read_into(&mut self, name: &str, dst: &mut Tensor) -> Result<()> {
        let e = self.entry(name)?;
        let path = self.path.clone();
        let refuse = |message: String| ModelError::Checkpoint { path: path.clone(), message };
        if dst.size() != e.shape {
            return Err(refuse(format!("tensor {name} has shape {:?}, the destination {:?}", e.shape, dst.size())));
        }
        let floating = |k: Kind| matches!(k, Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16);
        if floating(dst.kind()) != floating(e.kind) || (!floating(e.kind) && e.kind != dst.kind()) {
            return Err(refuse(format!(
                "tensor {name} is stored as {}, which cannot hold {} weights",
                dtype_name(e.kind),
                dtype_name(dst.kind())
            )));
        }
        let rows = e.shape.first().copied();
        let per_chunk = (READ_CHUNK_BYTES / e.row_bytes().max(1)).max(1) as i64;
        let mut row = 0;
        while row < rows.unwrap_or(1) {
            let n = per_chunk.min(rows.unwrap_or(1) - row);
            let slab = self.rows(name, &e, row, n)?;
            if floating(e.kind) {
                let bad = i64::try_from(slab.isfinite().logical_not().sum(Kind::Int64))?;
                if bad > 0 {
                    return Err(refuse(format!(
                        "tensor {name} holds {bad} NaN or infinite values (in rows {row}..{}); the weights are damaged or come from a diverged run, and were not loaded",
                        row + n
                    )));
                }
            }
            match rows {
                Some(_) => dst.f_narrow(0, row, n)?.f_copy_(&slab)?,
                None => dst.f_copy_(&slab)?, // a scalar
            };
            row += n;
        }
        Ok(())
    }

    /// Reads one tensor (on the CPU, in its stored dtype).
    pub fn read(&mut self, name: &str) -> Result<Tensor> {
        let e = self.entry(name)?;
        let rows = e.shape.first().copied().unwrap_or(1);
        self.rows(name, &e, 0, rows)
    }

    fn entry(&self, name: &str) -> Result<Entry> {
        self.entries
            .get(name)
            .cloned()
            .ok_or_else(|| ModelError::Checkpoint { path: self.path.clone(), message: format!("no tensor {name}") })
    }

    /// Rows `first..first + n` of a tensor (along its first dimension; a scalar is one row).
    fn rows(&mut self, name: &str, e: &Entry, first: i64, n: i64) -> Result<Tensor> {
        let row_bytes = e.row_bytes();
        let mut shape = e.shape.clone();
        if let Some(d) = shape.first_mut() {
            *d = n;
        }
        let mut bytes = vec![0u8; (n as u64 * row_bytes) as usize];
        self.file
            .seek(SeekFrom::Start(self.data_start + e.start + first as u64 * row_bytes))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(|io| ModelError::Checkpoint {
                path: self.path.clone(),
                message: format!("reading {name}: {io}"),
            })?;
        Ok(Tensor::f_from_data_size(&bytes, &shape, e.kind)?)
    }
}

/// A dtype as safetensors names it.
fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Double => "F64",
        Kind::Float => "F32",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => "another dtype",
    }
}

/// Writes a model config as pretty JSON, atomically.
pub fn save_config(cfg: &ModelConfig, dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(cfg).map_err(|e| ModelError::Config(e.to_string()))?;
    write_atomic(&dir.join(CONFIG_FILE), json.as_bytes())
}

/// Reads a checkpoint's model config.
pub fn load_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
    let cfg: ModelConfig =
        serde_json::from_str(&text).map_err(|e| ModelError::ConfigFile { path, message: e.to_string() })?;
    cfg.validate()?;
    Ok(cfg)
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a crash
/// never leaves a half-written file where a good one was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|source| ModelError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })
}

/// Replaces the directory `dir` as one unit: `fill` writes the new contents into a
/// sibling temporary directory `.NAME.tmpPID`, which is flushed to disk and then
/// swapped in by two renames (`dir` to `.NAME.oldPID`, the new one to `dir`), so the
/// previous directory stays intact until the new one is complete, and a failed
/// `fill` (a full disk, say) leaves it untouched. A kill between the renames
/// leaves no `dir`; [`crate::run_dir::recover`] then promotes the new copy, which
/// is complete by then.
pub fn replace_dir<E: From<ModelError> + std::fmt::Display>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    use crate::run_dir::fault_point;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| E::from(ModelError::Io { path, source })
    };
    // `Path::new("out").parent()` is `Some("")`: the current folder.
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let filled = fill(&tmp).and_then(|()| sync_tree(&tmp).map_err(io(&tmp)));
    if let Err(e) = filled {
        let _ = std::fs::remove_dir_all(&tmp); // the previous `dir` is untouched
        let text = e.to_string();
        if ["No space left on device", "File too large", "Disk quota exceeded"].iter().any(|m| text.contains(m)) {
            return Err(E::from(ModelError::DiskFull(format!(
                "the disk is full (or a file-size limit was reached) while saving {}: {text}. The previous copy is intact; free some space and run again (with --resume to continue)",
                dir.display()
            ))));
        }
        return Err(e);
    }
    fault_point("save.filled");
    let old = parent.join(format!(".{name}.old{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    fault_point("save.swapping");
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    sync_path(parent).map_err(io(parent))?;
    fault_point("save.swapped");
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Flushes every file in `dir` and the folder itself to disk.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            sync_path(&path)?;
        }
    }
    sync_path(dir)
}

fn sync_path(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reads_equal_whole_reads_in_any_destination_dtype() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.safetensors");
        let big = Tensor::randn([5000, 1000], (Kind::Float, tch::Device::Cpu)); // 20 MB: two slabs
        let half = Tensor::randn([3, 4], (Kind::Float, tch::Device::Cpu)).to_kind(Kind::BFloat16);
        Tensor::write_safetensors(&[("big", &big), ("half", &half)], &path).expect("write");
        let mut r = SafetensorsReader::open(&path).expect("open");
        assert_eq!(r.names().collect::<Vec<_>>(), ["big", "half"]);
        assert_eq!(r.shape("big"), Some(vec![5000, 1000]));
        let mut dst = Tensor::zeros([5000, 1000], (Kind::Float, tch::Device::Cpu));
        r.read_into("big", &mut dst).expect("slabs");
        assert!(dst.equal(&big), "slab-wise copy must be exact");
        let mut wide = Tensor::zeros([3, 4], (Kind::Float, tch::Device::Cpu));
        r.read_into("half", &mut wide).expect("bf16 into f32");
        assert!(wide.equal(&half.to_kind(Kind::Float)));
        let mut wrong = Tensor::zeros([4, 3], (Kind::Float, tch::Device::Cpu));
        assert!(r.read_into("half", &mut wrong).expect_err("shape").to_string().contains("[3, 4]"));
    }

    #[test]
    fn damaged_or_relabelled_weights_are_refused_naming_the_tensor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cpu = (Kind::Float, tch::Device::Cpu);
        let mut vs = nn::VarStore::new(tch::Device::Cpu);
        let _w = vs.root().var("w", &[6000, 1000], nn::Init::Const(0.0)); // two slabs
        let _b = vs.root().var("b", &[4], nn::Init::Const(0.0));
        let save = |name: &str, w: &Tensor, b: &Tensor| {
            let path = dir.path().join(name);
            Tensor::write_safetensors(&[("w", w), ("b", b)], &path).expect("write");
            path
        };
        let (w, b) = (Tensor::randn([6000, 1000], cpu), Tensor::randn([4], cpu));
        load_into(&mut vs, &save("good", &w, &b)).expect("finite weights of the right dtype load");
        // A NaN in the second slab and an infinity are named with the tensor.
        let nan = w.copy();
        let _ = nan.get(5999).get(3).fill_(f64::NAN);
        let err = load_into(&mut vs, &save("nan", &nan, &b)).expect_err("NaN").to_string();
        assert!(err.contains("tensor w holds 1 NaN or infinite values"), "{err}");
        let inf = b.copy();
        let _ = inf.get(0).fill_(f64::INFINITY);
        let err = load_into(&mut vs, &save("inf", &w, &inf)).expect_err("inf").to_string();
        assert!(err.contains("tensor b holds 1 NaN"), "{err}");
        // The same bytes relabelled: F32 as I32 (same size), and a half-precision copy.
        let path = save("relabelled", &w, &b);
        let mut bytes = std::fs::read(&path).expect("read");
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        let header = String::from_utf8(bytes[8..8 + n].to_vec()).expect("utf8").replacen("F32", "I32", 1);
        bytes.splice(8..8 + n, header.into_bytes());
        std::fs::write(&path, bytes).expect("write");
        let err = load_into(&mut vs, &path).expect_err("relabelled").to_string();
        assert!(err.contains("is stored as I32, the model expects F32"), "{err}");
        let err = load_into(&mut vs, &save("half", &w.to_kind(Kind::Half), &b)).expect_err("F16").to_string();
        assert!(err.contains("tensor w is stored as F16, the model expects F32"), "{err}");
    }

    #[test]
    fn files_that_are_not_safetensors_are_named_in_the_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes) in
            [("empty", &b""[..]), ("huge-header", &[255u8; 16][..]), ("not-json", b"\x04\0\0\0\0\0\0\0abcd")]
        {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            let err = SafetensorsReader::open(&path).expect_err(name).to_string();
            assert!(err.contains(name) && err.contains("safetensors"), "{name}: {err}");
        }
    }
}
