//! The console's files, compiled in by `build.rs` (plain and gzipped).

pub struct Asset {
    /// Relative to `assets/` (`app.js`, `index.html`).
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    pub gzip: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}
