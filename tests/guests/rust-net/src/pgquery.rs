//! A PostgreSQL client in a function: connects with `fnvm_guest::net::TcpStream` to
//! `PG_ADDRESS` (`host:port`), logs in as `PG_USER` / `PG_PASSWORD` to `PG_DATABASE`
//! (SCRAM-SHA-256, cleartext or no password, as the server asks), runs `PG_QUERY` with the simple
//! query protocol, and prints every row as its values separated by `|` (NULL as `NULL`), one
//! row per line. The messages are encoded and decoded by `postgres-protocol`, the codec of the
//! rust-postgres project; fnvm's socket carries them. On an error: `error: ...`, exit status 1.
use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use fnvm_guest::net::TcpStream;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use std::io::{self, Read, Write};

struct Conn {
    stream: TcpStream,
    input: BytesMut,
}

impl Conn {
    fn send(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        self.stream.write_all(buf)?;
        buf.clear();
        Ok(())
    }

    fn next(&mut self) -> io::Result<Message> {
        loop {
            if let Some(m) = Message::parse(&mut self.input)? {
                return Ok(m);
            }
            let mut chunk = [0u8; 8192];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed",
                ));
            }
            self.input.extend_from_slice(&chunk[..n]);
        }
    }
}

fn fail(what: &str) -> io::Error {
    io::Error::other(what.to_string())
}

fn server_error(body: &postgres_protocol::message::backend::ErrorResponseBody) -> io::Error {
    let mut text = String::from("server error:");
    let mut fields = body.fields();
    while let Ok(Some(f)) = fields.next() {
        if f.type_() == b'M' {
            text.push(' ');
            text.push_str(&String::from_utf8_lossy(f.value_bytes()));
        }
    }
    fail(&text)
}

fn run() -> io::Result<Vec<String>> {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let (user, password, database) = (var("PG_USER"), var("PG_PASSWORD"), var("PG_DATABASE"));
    let mut c = Conn {
        stream: TcpStream::connect(&var("PG_ADDRESS"))?,
        input: BytesMut::new(),
    };
    let mut buf = BytesMut::new();
    frontend::startup_message(
        [("user", user.as_str()), ("database", database.as_str())],
        &mut buf,
    )?;
    c.send(&mut buf)?;
    let mut scram: Option<ScramSha256> = None;
    loop {
        match c.next()? {
            Message::AuthenticationOk => {}
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password.as_bytes(), &mut buf)?;
                c.send(&mut buf)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut found = false;
                while let Some(m) = mechanisms.next()? {
                    found |= m == SCRAM_SHA_256;
                }
                if !found {
                    return Err(fail("the server offers no SCRAM-SHA-256"));
                }
                let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut buf)?;
                c.send(&mut buf)?;
                scram = Some(s);
            }
            Message::AuthenticationSaslContinue(body) => {
                let s = scram.as_mut().ok_or_else(|| fail("SASL out of order"))?;
                s.update(body.data())?;
                frontend::sasl_response(s.message(), &mut buf)?;
                c.send(&mut buf)?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let mut s = scram.take().ok_or_else(|| fail("SASL out of order"))?;
                s.finish(body.data())?;
            }
            Message::ErrorResponse(body) => return Err(server_error(&body)),
            Message::ReadyForQuery(_) => break,
            // ParameterStatus, BackendKeyData, notices.
            _ => {}
        }
    }
    frontend::query(&var("PG_QUERY"), &mut buf)?;
    c.send(&mut buf)?;
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        match c.next()? {
            Message::DataRow(body) => {
                let data = body.buffer();
                let mut ranges = body.ranges();
                let mut values = Vec::new();
                while let Some(r) = ranges.next()? {
                    values.push(match r {
                        Some(r) => String::from_utf8_lossy(&data[r]).into_owned(),
                        None => "NULL".to_string(),
                    });
                }
                rows.push(values.join("|"));
            }
            Message::ErrorResponse(body) => error = Some(server_error(&body)),
            Message::ReadyForQuery(_) => break,
            _ => {}
        }
    }
    frontend::terminate(&mut buf);
    let _ = c.send(&mut buf);
    match error {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

fn main() {
    match run() {
        Ok(rows) => {
            for r in rows {
                println!("{r}");
            }
        }
        Err(e) => {
            println!("error: {e}");
            std::process::exit(1);
        }
    }
}
