//! `coconut export-web`, and what `import-hf` may write over: files a command owns, and the rest.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use coconut::Checkpoint;

/// Exports a checkpoint for the page into `out` (created, or an existing directory where only the
/// export's own files are replaced: it never deletes what it did not write). `out` may not contain
/// or lie inside the checkpoint. The weights are loaded on `device` first, like `eval` does, so a
/// checkpoint that cannot run is not exported.
pub fn export_web(
    checkpoint: &std::path::Path,
    out: &std::path::Path,
    method: Option<&str>,
    max_thoughts: Option<usize>,
    device: &burn::prelude::Device,
) -> Result<()> {
    let ckpt = Checkpoint::load(checkpoint)?.without_files(); // validates before anything is written
    ckpt.model(device).with_context(|| checkpoint.display().to_string())?;
    let (method, k, defaulted) = ckpt.asked_as(method, None);
    let method = method.as_str();
    coconut::curriculum::Variant::parse(method).map_err(anyhow::Error::msg)?;
    let max_thoughts = max_thoughts.unwrap_or(k);
    if defaulted && ckpt.manifest.trained_for.is_none() {
        eprintln!("note: {} does not record what it was trained for: exported as {method} (--method)", checkpoint.display());
    }
    let (source, target) = (std::fs::canonicalize(checkpoint)?, absolute(out)?);
    if target.starts_with(&source) || source.starts_with(&target) {
        bail!("--out {} contains or is inside --checkpoint {}: export into a directory of its own", out.display(), checkpoint.display());
    }
    if out.exists() && !out.is_dir() {
        bail!("--out {} is a file, not a directory (nothing was changed)", out.display());
    }
    let tmp = coconut::checkpoint::temp_dir_for(out)?;
    ckpt.write_files(&tmp)?;
    let mut names: Vec<String> = ["manifest.json", "config.json", "tokenizer.json", ckpt.manifest.weights_file.as_str()].map(String::from).to_vec();
    let mut files = Vec::new();
    for name in &names {
        let bytes = std::fs::read(tmp.join(name))?;
        files.push(serde_json::json!({ "name": name, "bytes": bytes.len(), "sha256": coconut::checkpoint::sha256_hex(&bytes) }));
    }
    let web = serde_json::json!({
        "format": "coconut-web",
        "version": &ckpt.manifest.weights_sha256[..16],
        "method": method,
        "max_thoughts": max_thoughts,
        "total_bytes": files.iter().map(|f| f["bytes"].as_u64().unwrap_or(0)).sum::<u64>(),
        "files": files,
    });
    std::fs::write(tmp.join("web.json"), serde_json::to_string_pretty(&web)?).with_context(|| tmp.display().to_string())?;
    names.push("web.json".into());
    if !out.exists() {
        coconut::checkpoint::replace_dir(&tmp, out)?;
    } else {
        // Into an existing directory: each file moves in by a rename (web.json last, so it never
        // lists a file that is not there yet); files of an earlier export that this one lacks go;
        // anything else in the directory (a model card, notes) stays.
        let earlier = export_files(out);
        for name in &names {
            std::fs::rename(tmp.join(name), out.join(name)).with_context(|| out.join(name).display().to_string())?;
        }
        for name in earlier.iter().filter(|n| !names.contains(n)) {
            if coconut::checkpoint::plain_file_name(name).is_ok() {
                let _ = std::fs::remove_file(out.join(name));
            }
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
    eprintln!("exported {} -> {} (version {})", checkpoint.display(), out.display(), web["version"]);
    Ok(())
}

/// An absolute form of a path that may not exist yet (its existing ancestor resolved).
fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    let path = std::path::absolute(path).with_context(|| path.display().to_string())?;
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        rest.push(existing.file_name().unwrap_or_default().to_owned());
        existing = existing.parent().unwrap_or(std::path::Path::new("/"));
    }
    let mut resolved = std::fs::canonicalize(existing)?;
    resolved.extend(rest.iter().rev());
    Ok(resolved)
}

/// The files of an earlier export in `dir`: those its `web.json` lists, and web.json itself.
fn export_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read(dir.join("web.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .filter(|w| w["format"] == "coconut-web")
        .map(|w| {
            let listed = w["files"].as_array().map(|fs| fs.iter().filter_map(|f| f["name"].as_str().map(String::from)).collect()).unwrap_or_default();
            [listed, vec!["web.json".to_string()]].concat()
        })
        .unwrap_or_default()
}

/// The files of a checkpoint in `dir`: the four a checkpoint has, and those its manifest lists.
pub fn checkpoint_files(dir: &std::path::Path) -> Vec<String> {
    let Ok(manifest) = std::fs::read(dir.join("manifest.json")) else { return Vec::new() };
    let Ok(m) = serde_json::from_slice::<coconut::checkpoint::Manifest>(&manifest) else { return Vec::new() };
    let mut own: Vec<String> = ["manifest.json", "config.json", "tokenizer.json"].map(String::from).to_vec();
    own.push(m.weights_file);
    own.extend(m.files.into_iter().map(|f| f.name));
    own
}

/// What in `out` is not one of `own` (plain files): every entry of a directory that holds
/// something else, or `out` itself when it is a file.
pub fn foreign_files(out: &std::path::Path, own: &[String]) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(if out.exists() { vec![out.display().to_string()] } else { Vec::new() });
    };
    let mut foreign = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !(own.contains(&name) && entry.file_type()?.is_file()) {
            foreign.push(if entry.file_type()?.is_dir() { format!("{name}/") } else { name });
        }
    }
    foreign.sort();
    Ok(foreign)
}
