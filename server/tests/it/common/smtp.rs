//! A real SMTP server for the email tests: greeting, EHLO, STARTTLS (with a
//! self-signed certificate the test trusts), AUTH PLAIN, MAIL, RCPT, DATA,
//! QUIT, with the error codes real servers give. A password containing
//! `bad` is refused (535); a recipient `nobody@…` does not exist (550).
//! It records what it received, and any AUTH attempted before TLS.
#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    pub user: String,
}

#[derive(Clone, Default)]
pub struct Record {
    pub mails: Arc<Mutex<Vec<Mail>>>,
    /// AUTH commands seen on a connection that was not encrypted.
    pub plain_auths: Arc<Mutex<u32>>,
}

pub struct SmtpFake {
    pub addr: SocketAddr,
    /// The certificate authority to trust (the self-signed certificate).
    pub ca_pem: Vec<u8>,
    pub record: Record,
}

/// Starts the server on 127.0.0.1; `starttls` says whether it offers TLS.
pub async fn start(starttls: bool) -> SmtpFake {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let ca_pem = certified.cert.pem().into_bytes();
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
        certified.signing_key.serialize_der().into(),
    );
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = Record::default();
    let shared = record.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let record = shared.clone();
            tokio::spawn(async move {
                let (stream, upgrade) = match session(stream, false, starttls, &record).await {
                    Some(upgrade) => upgrade,
                    None => return,
                };
                if upgrade && let Ok(tls) = acceptor.accept(stream).await {
                    session(tls, true, false, &record).await;
                }
            });
        }
    });
    SmtpFake {
        addr,
        ca_pem,
        record,
    }
}

/// One SMTP conversation. Returns the stream when the client asked for
/// STARTTLS (to continue over TLS), or `None` when it ended.
async fn session<S>(stream: S, tls: bool, offer_tls: bool, record: &Record) -> Option<(S, bool)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = BufReader::new(stream);
    if !tls {
        stream
            .write_all(b"220 fake.smtp ESMTP ready\r\n")
            .await
            .ok()?;
    }
    let mut user = None;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            match (tls, offer_tls) {
                (false, true) => "250-fake.smtp\r\n250-STARTTLS\r\n250 8BITMIME\r\n".into(),
                (false, false) => "250-fake.smtp\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n".into(),
                (true, _) => "250-fake.smtp\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n".into(),
            }
        } else if upper == "STARTTLS" && !tls && offer_tls {
            stream
                .write_all(b"220 2.0.0 Ready to start TLS\r\n")
                .await
                .ok()?;
            return Some((stream.into_inner(), true));
        } else if upper.starts_with("AUTH PLAIN") {
            if !tls {
                *record.plain_auths.lock().unwrap() += 1;
            }
            let encoded = command["AUTH PLAIN".len()..].trim().to_owned();
            let encoded = if encoded.is_empty() {
                stream.write_all(b"334 \r\n").await.ok()?;
                line.clear();
                stream.read_line(&mut line).await.ok()?;
                line.trim().to_owned()
            } else {
                encoded
            };
            let decoded = STANDARD.decode(encoded).unwrap_or_default();
            let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
            let (name, password) = match parts.as_slice() {
                [_, name, password] => (
                    String::from_utf8_lossy(name).into_owned(),
                    String::from_utf8_lossy(password).into_owned(),
                ),
                _ => (String::new(), String::new()),
            };
            if password.is_empty() || password.contains("bad") {
                "535 5.7.8 Authentication credentials invalid\r\n".into()
            } else {
                user = Some(name);
                "235 2.7.0 Authentication successful\r\n".into()
            }
        } else if upper.starts_with("MAIL FROM:") {
            if user.is_none() {
                "530 5.7.0 Authentication required\r\n".into()
            } else {
                mail = Mail {
                    from: command[10..].trim().to_owned(),
                    user: user.clone().unwrap_or_default(),
                    ..Mail::default()
                };
                "250 2.1.0 OK\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let to = command[8..].trim().to_owned();
            if to.to_ascii_lowercase().contains("<nobody@") {
                "550 5.1.1 No such user here\r\n".into()
            } else {
                mail.to.push(to);
                "250 2.1.5 OK\r\n".into()
            }
        } else if upper == "DATA" {
            stream
                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                .await
                .ok()?;
            let mut data = String::new();
            loop {
                line.clear();
                if stream.read_line(&mut line).await.ok()? == 0 {
                    return None;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            mail.data = data;
            record.mails.lock().unwrap().push(std::mem::take(&mut mail));
            "250 2.0.0 OK queued\r\n".into()
        } else if upper == "RSET" || upper == "NOOP" {
            "250 2.0.0 OK\r\n".into()
        } else if upper == "QUIT" {
            let _ = stream.write_all(b"221 2.0.0 Bye\r\n").await;
            return None;
        } else {
            "502 5.5.2 Command not recognized\r\n".into()
        };
        stream.write_all(reply.as_bytes()).await.ok()?;
    }
}
