//! The static folder (`--static DIR`, config `static`): files under one root, served after the
//! security middleware, so in secure mode they need the same `/@HTTP` grants as any route.
//!
//! Nothing outside the root is ever served: the pathname is percent-decoded once, `..`
//! segments, NUL, backslashes and dotfiles are refused, and the file found is canonicalised and
//! must still lie under the canonical root (so symlinks cannot lead out either).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;

#[derive(Debug, thiserror::Error)]
pub enum StaticDirError {
    #[error("static folder {path}: {err}")]
    Open { path: String, err: std::io::Error },
    #[error("static folder {0} is not a directory")]
    NotADirectory(String),
}

#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// Canonical root directory.
    root: PathBuf,
}

const CHUNK: usize = 64 * 1024;

impl StaticFiles {
    pub fn open(dir: &Path) -> Result<StaticFiles, StaticDirError> {
        let root = std::fs::canonicalize(dir).map_err(|err| StaticDirError::Open {
            path: dir.display().to_string(),
            err,
        })?;
        if !root.is_dir() {
            return Err(StaticDirError::NotADirectory(dir.display().to_string()));
        }
        Ok(StaticFiles { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file for a GET or HEAD, a redirect for a directory named without its trailing
    /// slash, or `None` (the caller answers 404 as for any unknown route).
    pub async fn serve(&self, method: &Method, uri: &Uri) -> Option<Response> {
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        let rel = relative_path(uri.path())?;
        let mut file = self.inside(&self.root.join(rel)).await?;
        let mut meta = tokio::fs::metadata(&file).await.ok()?;
        if meta.is_dir() {
            if !uri.path().ends_with('/') {
                return Some(redirect_to_directory(uri));
            }
            file = self.inside(&file.join("index.html")).await?;
            meta = tokio::fs::metadata(&file).await.ok()?;
        }
        if !meta.is_file() {
            return None;
        }
        let handle = tokio::fs::File::open(&file).await.ok()?;
        let mut resp = Response::new(Body::from_stream(chunks(handle)));
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&content_type(&file)) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
        if let Some(v) = meta
            .modified()
            .ok()
            .and_then(|m| HeaderValue::from_str(&httpdate::fmt_http_date(m)).ok())
        {
            h.insert(header::LAST_MODIFIED, v);
        }
        Some(resp)
    }

    /// `path` resolved through any symlinks, if it exists and lies under the root.
    async fn inside(&self, path: &Path) -> Option<PathBuf> {
        let resolved = tokio::fs::canonicalize(path).await.ok()?;
        resolved.starts_with(&self.root).then_some(resolved)
    }
}

/// The relative file path a raw request pathname names, or `None` if it must be refused.
pub fn relative_path(raw: &str) -> Option<PathBuf> {
    let decoded = percent_decode_str(raw).decode_utf8().ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut rel = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            // `..` could climb out; dotfiles (.git, .env) are not published, as serve-static's
            // default.
            s if s.starts_with('.') => return None,
            s => rel.push(s),
        }
    }
    Some(rel)
}

/// `301` to the same path with a trailing slash, so relative links in its index page work.
/// Leading slashes are collapsed: `//host/` would be a redirect to another site.
fn redirect_to_directory(uri: &Uri) -> Response {
    let mut location = format!("/{}/", uri.path().trim_start_matches('/'));
    if let Some(q) = uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let body = format!("Redirecting to {location}");
    let mut r = (StatusCode::MOVED_PERMANENTLY, [(header::CONTENT_TYPE, "text/plain")], body).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn content_type(file: &Path) -> String {
    let mime = mime_guess::from_path(file).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(mime.subtype().as_str(), "javascript" | "json" | "xml")
        || mime.suffix().is_some_and(|s| s == "xml" || s == "json");
    if textual {
        format!("{mime}; charset=UTF-8")
    } else {
        mime.to_string()
    }
}

/// The file as a stream of chunks, so large files are not read into memory at once.
fn chunks(file: tokio::fs::File) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            // Report the error once, then end the stream.
            Err(e) => Some((Err(e), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_refuse_escapes() {
        assert_eq!(relative_path("/a/b.html"), Some(PathBuf::from("a/b.html")));
        assert_eq!(relative_path("/"), Some(PathBuf::new()));
        assert_eq!(relative_path("//a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(relative_path("/my%20file.txt"), Some(PathBuf::from("my file.txt")));
        for bad in [
            "/../x",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/a%2f..%2f..%2fx",
            "/..%5cx",
            "/x%00.html",
            "/.env",
            "/a/.git/config",
            "/%ff",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("a.html")), "text/html; charset=UTF-8");
        assert_eq!(content_type(Path::new("a.js")), "text/javascript; charset=UTF-8");
        assert_eq!(content_type(Path::new("a.json")), "application/json; charset=UTF-8");
        assert_eq!(content_type(Path::new("a.png")), "image/png");
        assert_eq!(content_type(Path::new("a.unknownext")), "application/octet-stream");
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("happn-rs-static-{name}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    async fn body_of(r: Response) -> String {
        String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn serves_inside_the_root_only() {
        let base = temp_dir("root");
        let root = base.join("site");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("index.html"), "<h1>home</h1>").unwrap();
        std::fs::write(root.join("sub/index.html"), "sub home").unwrap();
        std::fs::write(root.join("big.bin"), vec![7u8; 3 * CHUNK + 5]).unwrap();
        std::fs::write(base.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("index.html"), root.join("inner-link.html")).unwrap();
        let s = StaticFiles::open(&root).unwrap();
        let get = |p: &'static str| {
            let s = s.clone();
            async move { s.serve(&Method::GET, &Uri::from_static(p)).await }
        };

        let r = get("/").await.unwrap();
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=UTF-8");
        assert_eq!(body_of(r).await, "<h1>home</h1>");
        let r = get("/sub").await.unwrap();
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(r.headers()[header::LOCATION], "/sub/");
        assert_eq!(body_of(get("/sub/").await.unwrap()).await, "sub home");
        let r = get("/big.bin").await.unwrap();
        assert_eq!(r.headers()[header::CONTENT_LENGTH], (3 * CHUNK + 5).to_string().as_str());
        assert_eq!(axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().len(), 3 * CHUNK + 5);
        assert_eq!(body_of(get("/inner-link.html").await.unwrap()).await, "<h1>home</h1>");

        assert!(get("/link.txt").await.is_none(), "a symlink out of the root");
        assert!(get("/../secret.txt").await.is_none());
        assert!(get("/%2e%2e/secret.txt").await.is_none());
        assert!(get("/missing.html").await.is_none());
        assert!(s.serve(&Method::POST, &Uri::from_static("/index.html")).await.is_none());
        let r = s.serve(&Method::GET, &Uri::from_static("//sub?x=1")).await.unwrap();
        assert_eq!(r.headers()[header::LOCATION], "/sub/?x=1", "never a protocol-relative redirect");

        assert!(matches!(
            StaticFiles::open(&root.join("index.html")),
            Err(StaticDirError::NotADirectory(_))
        ));
        assert!(StaticFiles::open(&base.join("nope")).is_err());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
