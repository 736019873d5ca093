//! Endpoints (`unix:PATH`, `tcp:HOST:PORT`), listeners and streams, so that
//! code above this module never branches on the socket kind.
//!
//! Unix socket files get the careful treatment of `socket_file`: a checked
//! parent directory, only a stale socket ever replaced, the mode set before
//! the socket appears, and only our own socket removed at drop. It
//! deliberately does no framing.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::error::Error;
pub use crate::socket_file::SocketOptions;
use crate::socket_file::{self, FileIdentity};

/// Where a server listens or a client connects, parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A Unix domain socket path.
    Unix(PathBuf),
    /// A TCP `host:port` (resolved when used; port 0 binds a free port).
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:PATH` or `tcp:HOST:PORT`.
    ///
    /// # Errors
    /// [`Error::BadEndpoint`] for any other form.
    pub fn parse(text: &str) -> Result<Endpoint, Error> {
        let bad = |reason| Error::BadEndpoint { text: text.to_owned(), reason };
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(address) = text.strip_prefix("tcp:") {
            let Some((host, port)) = address.rsplit_once(':') else {
                return Err(bad("expected tcp:HOST:PORT"));
            };
            if host.is_empty() || port.parse::<u16>().is_err() {
                return Err(bad("expected tcp:HOST:PORT with a port from 0 to 65535"));
            }
            return Ok(Endpoint::Tcp(address.to_owned()));
        }
        Err(bad("expected unix:PATH or tcp:HOST:PORT"))
    }

    /// Connects to the endpoint.
    ///
    /// # Errors
    /// [`Error::Io`] naming the endpoint.
    pub async fn connect(&self) -> Result<Stream, Error> {
        let stream = match self {
            Endpoint::Unix(path) => UnixStream::connect(path).await.map(Stream::Unix),
            Endpoint::Tcp(address) => TcpStream::connect(address.as_str()).await.and_then(|stream| {
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }),
        };
        stream.map_err(|source| Error::io(format!("cannot connect to {self}"), source))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp(address) => write!(f, "tcp:{address}"),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Endpoint, Error> {
        Endpoint::parse(text)
    }
}

/// A bound listener of either kind. Dropping a Unix listener removes its
/// socket file.
#[derive(Debug)]
pub enum Listener {
    /// A Unix listener, the path it owns, and the `(dev, inode)` of the
    /// socket file it created, so that dropping it never removes a file a
    /// later server created at the same path.
    Unix(UnixListener, PathBuf, FileIdentity),
    /// A TCP listener.
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `endpoint`, waiting up to `within` while another server still
    /// answers on it — one killed a moment ago lets go of its socket only
    /// when its accept task is dropped, a scheduler tick later. For a Unix
    /// path: creates the parent directory, replaces a stale socket file,
    /// refuses a live one, sets the mode.
    ///
    /// # Errors
    /// [`Error::SocketInUse`] when another server still answers after
    /// `within`, [`Error::Io`] naming the endpoint otherwise.
    pub async fn bind_when_free(
        endpoint: &Endpoint,
        options: SocketOptions,
        within: Duration,
    ) -> Result<Listener, Error> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match Listener::bind(endpoint, options).await {
                Err(Error::SocketInUse { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                bound => return bound,
            }
        }
    }

    /// Binds `endpoint` now; see [`Listener::bind_when_free`] to wait for a
    /// server that is going away.
    ///
    /// # Errors
    /// As [`Listener::bind_when_free`], at once.
    pub async fn bind(endpoint: &Endpoint, options: SocketOptions) -> Result<Listener, Error> {
        match endpoint {
            Endpoint::Unix(path) => bind_unix(path, options).await,
            Endpoint::Tcp(address) => TcpListener::bind(address.as_str())
                .await
                .map(Listener::Tcp)
                .map_err(|source| Error::io(format!("cannot bind {endpoint}"), source)),
        }
    }

    /// The endpoint clients can connect to (with the real port for `tcp:…:0`).
    pub fn local_endpoint(&self) -> Endpoint {
        match self {
            Listener::Unix(_, path, _) => Endpoint::Unix(path.clone()),
            Listener::Tcp(listener) => match listener.local_addr() {
                Ok(address) => Endpoint::Tcp(address.to_string()),
                Err(_) => Endpoint::Tcp("unknown:0".to_owned()),
            },
        }
    }

    /// Accepts one connection.
    ///
    /// # Errors
    /// The accept error (often transient, such as too many open files).
    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(listener, _, _) => listener.accept().await.map(|(stream, _)| Stream::Unix(stream)),
            Listener::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path, identity) = self
            && socket_file::file_identity(path) == Some(*identity)
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn bind_unix(path: &Path, options: SocketOptions) -> Result<Listener, Error> {
    socket_file::prepare_parent(path)?;
    if let socket_file::Existing::Socket(identity) = socket_file::existing(path)? {
        if UnixStream::connect(path).await.is_ok() {
            return Err(Error::SocketInUse { path: path.to_owned() });
        }
        socket_file::remove_stale(path, identity)?;
    }
    let (listener, identity) = socket_file::bind_private(path, options)?;
    let listener = listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(listener))
        .map_err(|source| Error::io(format!("cannot listen on {}", path.display()), source))?;
    Ok(Listener::Unix(listener, path.to_owned(), identity))
}

/// A connected stream of either kind.
#[derive(Debug)]
pub enum Stream {
    /// Unix domain socket.
    Unix(UnixStream),
    /// TCP (no Nagle delay).
    Tcp(TcpStream),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_read(cx, buf),
            Stream::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_write(cx, buf),
            Stream::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_flush(cx),
            Stream::Tcp(stream) => Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(stream) => Pin::new(stream).poll_shutdown(cx),
            Stream::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// The uid the peer process runs as, as the kernel reports it
    /// (`SO_PEERCRED`); `None` for TCP, where nothing vouches for it.
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            Stream::Unix(stream) => stream.peer_cred().ok().map(|credentials| credentials.uid()),
            Stream::Tcp(_) => None,
        }
    }

    /// Splits into owned read and write halves usable from two tasks.
    pub fn into_split(self) -> (Box<dyn AsyncRead + Send + Unpin>, Box<dyn AsyncWrite + Send + Unpin>) {
        match self {
            Stream::Unix(stream) => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
            Stream::Tcp(stream) => {
                let (read, write) = stream.into_split();
                (Box::new(read), Box::new(write))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn endpoints_parse_and_display_the_same_way() {
        for text in ["unix:/tmp/mycelium.sock", "tcp:127.0.0.1:7474", "tcp:[::1]:0", "tcp:localhost:80"] {
            assert_eq!(Endpoint::parse(text).unwrap().to_string(), text);
        }
        for bad in ["", "unix:", "tcp:1.2.3.4", "tcp::80", "tcp:host:99999", "http://x", "/tmp/x.sock"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn sockets_are_never_world_writable_nor_served_from_an_open_directory() {
        let dir = tempfile::tempdir().unwrap();
        let options = SocketOptions { mode: 0o666, group: None };
        let endpoint = Endpoint::Unix(dir.path().join("broker.sock"));
        let _listener = Listener::bind(&endpoint, options).await.unwrap();
        let Endpoint::Unix(path) = &endpoint else { unreachable!() };
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o664);
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = Listener::bind(&Endpoint::Unix(open.join("b.sock")), SocketOptions::default()).await;
        assert!(refused.unwrap_err().to_string().contains("writable by group or others"));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Listener::bind(&Endpoint::Unix(open.join("b.sock")), SocketOptions::default()).await.is_ok());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = Endpoint::Unix(dir.path().join("sub/dir/broker.sock"));
        let first = Listener::bind(&endpoint, SocketOptions::default()).await.unwrap();
        let Endpoint::Unix(path) = &endpoint else { unreachable!() };
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o660);
        let second = Listener::bind(&endpoint, SocketOptions::default()).await;
        assert!(matches!(second, Err(Error::SocketInUse { .. })), "{second:?}");
        // The refused bind left the live server's socket alone.
        assert!(endpoint.connect().await.is_ok());
        // A socket file nobody listens on is stale: leak it, then rebind.
        std::mem::forget(first);
        let stale = std::os::unix::net::UnixListener::bind(dir.path().join("stale.sock")).unwrap();
        drop(stale);
        let stale_endpoint = Endpoint::Unix(dir.path().join("stale.sock"));
        assert!(Listener::bind(&stale_endpoint, SocketOptions::default()).await.is_ok());
    }
}
