//! A one-route HTTP server that misbehaves on purpose: what the bad-input
//! and trust tests point a board at to meet a hostile server.

use std::io::Read as _;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A one-route HTTP server on 127.0.0.1 that answers every request with
/// `respond` on its own thread, until dropped.
pub struct BadServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl BadServer {
    pub fn start(respond: fn(&mut std::net::TcpStream, &AtomicBool)) -> BadServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            stream.set_nonblocking(false).unwrap();
                            let mut buf = [0u8; 4096];
                            let _ = stream.read(&mut buf);
                            respond(&mut stream, &s);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        BadServer { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for BadServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
