//! Fetching the exported model (`coconut export-web`): `web.json` lists the checkpoint's files with
//! their sizes and SHA-256. Each file comes from the browser's Cache API when a verified copy of this
//! version is there, else from the network with byte progress; every file is verified (size + hash)
//! before use, a bad cached copy is dropped and fetched again, a bad download is an error and is
//! never cached. Runs in the worker (fetch and caches exist on its global object).

use js_sys::{Reflect, Uint8Array};
use serde::Deserialize;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, CacheStorage, ReadableStreamDefaultReader, Response, WorkerGlobalScope};

use coconut::checkpoint::sha256_hex;

const CACHE_NAME: &str = "coconut-models";

#[derive(Clone, Debug, Deserialize)]
pub struct WebManifest {
    pub format: String,
    pub version: String,
    pub method: String,
    pub max_thoughts: usize,
    pub total_bytes: u64,
    pub files: Vec<WebFile>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct WebFile {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// The files of one exported model, verified.
pub struct Fetched {
    pub manifest: WebManifest,
    pub files: Vec<(String, Vec<u8>)>,
    pub from_cache: bool,
}

impl Fetched {
    pub fn file(&self, name: &str) -> Result<&[u8], String> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, b)| b.as_slice()).ok_or_else(|| format!("web.json lists no {name}"))
    }
}

/// The global object as a worker scope. In a window the same `fetch` and `caches` methods exist and
/// web-sys calls them structurally, so `fetch_bytes` serves the UI thread too.
fn scope() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn js_err(what: &str, e: JsValue) -> String {
    let msg = e.as_string().or_else(|| Reflect::get(&e, &"message".into()).ok().and_then(|m| m.as_string())).unwrap_or_else(|| format!("{e:?}"));
    format!("{what}: {msg}")
}

async fn fetch(url: &str) -> Result<Response, String> {
    let init = web_sys::RequestInit::new();
    init.set_cache(web_sys::RequestCache::NoStore);
    let resp = JsFuture::from(scope().fetch_with_str_and_init(url, &init)).await.map_err(|e| js_err(&format!("downloading {url}"), e))?;
    let resp: Response = resp.dyn_into().map_err(|_| format!("{url}: not a response"))?;
    if !resp.ok() {
        return Err(format!("downloading {url}: HTTP {} {}", resp.status(), resp.status_text()));
    }
    Ok(resp)
}

async fn cache() -> Option<Cache> {
    let storage: CacheStorage = scope().caches().ok()?;
    JsFuture::from(storage.open(CACHE_NAME)).await.ok().map(JsCast::unchecked_into)
}

/// The body of `resp`, reporting each chunk's size.
async fn read_body(resp: Response, url: &str, mut on_chunk: impl FnMut(u64)) -> Result<Vec<u8>, String> {
    let body = resp.body().ok_or_else(|| format!("{url}: empty response"))?;
    let reader: ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut out = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(|e| js_err(&format!("reading {url}"), e))?;
        if Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            break;
        }
        let bytes: Uint8Array = Reflect::get(&chunk, &"value".into()).map_err(|e| js_err(url, e))?.unchecked_into();
        on_chunk(bytes.length() as u64);
        out.extend(bytes.to_vec());
    }
    Ok(out)
}

/// A whole file, uncached (the examples, the stack check's fixture).
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    read_body(fetch(url).await?, url, |_| {}).await
}

fn verify(f: &WebFile, bytes: &[u8]) -> Result<(), String> {
    if bytes.len() as u64 != f.bytes {
        return Err(format!("{}: {} bytes, web.json says {} (truncated or wrong file)", f.name, bytes.len(), f.bytes));
    }
    if sha256_hex(bytes) != f.sha256 {
        return Err(format!("{}: SHA-256 differs from web.json (corrupt download)", f.name));
    }
    Ok(())
}

/// Downloads (or takes from the cache) and verifies every file of the model at `base`.
/// `progress(file, loaded, total)` counts bytes over all files.
pub async fn fetch_model(base: &str, mut progress: impl FnMut(&str, u64, u64)) -> Result<Fetched, String> {
    let base = base.trim_end_matches('/');
    let web_json = fetch_bytes(&format!("{base}/web.json")).await?;
    let manifest: WebManifest = serde_json::from_slice(&web_json).map_err(|e| format!("{base}/web.json is malformed: {e}"))?;
    if manifest.format != "coconut-web" {
        return Err(format!("{base}/web.json: format `{}` is not coconut-web", manifest.format));
    }
    let cache = cache().await;
    let (mut loaded, total) = (0u64, manifest.total_bytes);
    let mut files = Vec::new();
    let mut from_cache = true;
    progress("web.json", 0, total);
    for f in &manifest.files {
        let url = format!("{base}/{}", f.name);
        let key = format!("{url}?v={}", manifest.version);
        let cached = match &cache {
            Some(c) => cached_bytes(c, &key).await,
            None => None,
        };
        let bytes = match cached {
            Some(b) if verify(f, &b).is_ok() => b,
            other => {
                if let (Some(c), Some(_)) = (&cache, other) {
                    let _ = JsFuture::from(c.delete_with_str(&key)).await; // a bad cached copy: drop it
                }
                from_cache = false;
                let start = loaded;
                let b = read_body(fetch(&url).await?, &url, |n| {
                    loaded += n;
                    progress(&f.name, loaded, total);
                })
                .await?;
                loaded = start;
                verify(f, &b).map_err(|e| format!("{e}; the download was discarded"))?;
                if let Some(c) = &cache {
                    store(c, &key, &b).await;
                }
                b
            }
        };
        loaded += f.bytes;
        progress(&f.name, loaded, total);
        files.push((f.name.clone(), bytes));
    }
    if let Some(c) = &cache {
        drop_other_versions(c, base, &manifest.version).await;
    }
    Ok(Fetched { manifest, files, from_cache })
}

async fn cached_bytes(cache: &Cache, key: &str) -> Option<Vec<u8>> {
    let hit = JsFuture::from(cache.match_with_str(key)).await.ok()?;
    let resp: Response = hit.dyn_into().ok()?;
    let buf = JsFuture::from(resp.array_buffer().ok()?).await.ok()?;
    Some(Uint8Array::new(&buf).to_vec())
}

async fn store(cache: &Cache, key: &str, bytes: &[u8]) {
    let arr = Uint8Array::from(bytes);
    if let Ok(resp) = Response::new_with_opt_buffer_source(Some(&arr)) {
        let _ = JsFuture::from(cache.put_with_str(key, &resp)).await;
    }
}

/// Removes cached files of this model directory from other versions.
async fn drop_other_versions(cache: &Cache, base: &str, version: &str) {
    let Ok(keys) = JsFuture::from(cache.keys()).await else { return };
    for req in js_sys::Array::from(&keys).iter() {
        let Ok(req) = req.dyn_into::<web_sys::Request>() else { continue };
        let url = req.url();
        if url.contains(&format!("{base}/")) && !url.ends_with(&format!("?v={version}")) {
            let _ = JsFuture::from(cache.delete_with_request(&req)).await;
        }
    }
}
