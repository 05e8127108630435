//! XMPP framing for the `--protocol xmpp` driver: cuts a client-to-server stream (one XML
//! document that never ends while connected) into its header and top-level stanzas, and
//! writes the few stanzas the driver sends. Parsing is quick-xml's pull reader over the
//! bytes received so far; a stanza is returned once its end tag has arrived.

use std::borrow::Cow;
use std::fmt::Write as _;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// The most a single stanza may take before the stream is declared broken.
const MAX_STANZA: usize = 1 << 20;

/// An element with its attributes (unescaped), children and text (concatenated, unescaped).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The qualified name as written, e.g. `message` or `stream:features`.
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The first descendant (depth first) with this name.
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| if c.name == name { Some(c) } else { c.find(name) })
    }

    fn open(start: &BytesStart<'_>) -> Result<Self, XmlError> {
        let name = start.name().as_ref().to_owned();
        let mut attrs = Vec::new();
        for a in start.attributes() {
            let a = a.map_err(|e| XmlError(format!("bad attribute in <{name}>: {e}")))?;
            let key = a.key.as_ref().to_owned();
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| XmlError(format!("bad attribute value in <{name}>: {e}")))?;
            attrs.push((key, value.into_owned()));
        }
        Ok(Self { name, attrs, children: Vec::new(), text: String::new() })
    }
}

/// What the stream yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `<stream:stream ...>` (its attributes; a new one follows every stream restart).
    StreamStart(Element),
    /// A complete top-level element: a stanza, `stream:features`, a SASL answer.
    Stanza(Element),
    /// `</stream:stream>`: the server closed the stream.
    StreamEnd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError(pub String);

impl std::fmt::Display for XmlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for XmlError {}

/// Bytes received and not yet returned as frames.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// The buffer to read into (its spare capacity; see `tokio::io::AsyncReadExt::read_buf`).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        &mut self.buf
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// One parse step: a frame, or `None` (more bytes needed, or only filler consumed).
    fn step(&mut self) -> Result<Option<Frame>, XmlError> {
        let (frame, used) = match parse_one(&self.buf)? {
            Some(x) => x,
            None if self.buf.len() > MAX_STANZA => {
                return Err(XmlError(format!("a stanza over {MAX_STANZA} bytes")));
            }
            None => return Ok(None),
        };
        self.buf.drain(..used);
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
        Ok(frame)
    }
}

/// Parses from the start of `buf`: `Ok(Some((frame, bytes used)))` for a complete frame,
/// `Ok(Some((None, n)))` when only whitespace, declarations or comments were consumed,
/// `Ok(None)` when the frame is incomplete.
#[allow(clippy::type_complexity)]
fn parse_one(buf: &[u8]) -> Result<Option<(Option<Frame>, usize)>, XmlError> {
    // Parse only whole UTF-8 characters; a character cut by the read waits for its rest.
    let text = match std::str::from_utf8(buf) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&buf[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(e) => return Err(XmlError(format!("invalid UTF-8: {e}"))),
    };
    let mut reader = Reader::from_str(text);
    {
        let config = reader.config_mut();
        // The stream's own start tag was returned earlier: its end arrives unmatched.
        config.check_end_names = false;
        config.allow_unmatched_ends = true;
    }
    let mut stack: Vec<Element> = Vec::new();
    let mut consumed = 0usize;
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            // The input ended inside markup or a reference (`&am`): wait for more.
            Err(
                quick_xml::Error::Syntax(_)
                | quick_xml::Error::IllFormed(quick_xml::errors::IllFormedError::UnclosedReference),
            ) => return Ok(tail(consumed)),
            Err(e) => return Err(XmlError(e.to_string())),
        };
        let pos = reader.buffer_position() as usize;
        match event {
            Event::Eof => return Ok(tail(consumed)),
            Event::Start(s) if stack.is_empty() && is_stream(s.name().as_ref()) => {
                return Ok(Some((Some(Frame::StreamStart(Element::open(&s)?)), pos)));
            }
            Event::Start(s) => stack.push(Element::open(&s)?),
            Event::Empty(s) => {
                let e = Element::open(&s)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(e),
                    None => return Ok(Some((Some(Frame::Stanza(e)), pos))),
                }
            }
            Event::End(end) => match stack.pop() {
                None if is_stream(end.name().as_ref()) => {
                    return Ok(Some((Some(Frame::StreamEnd), pos)));
                }
                None => {
                    let name = end.name().as_ref().to_owned();
                    return Err(XmlError(format!("unexpected </{name}>")));
                }
                Some(e) => {
                    if end.name().as_ref() != e.name {
                        return Err(XmlError(format!("<{}> closed by another tag", e.name)));
                    }
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(e),
                        None => return Ok(Some((Some(Frame::Stanza(e)), pos))),
                    }
                }
            },
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let raw = format!("&{};", &*r);
                    let value = quick_xml::escape::unescape(&raw)
                        .map_err(|e| XmlError(format!("bad reference {raw}: {e}")))?;
                    top.text.push_str(&value);
                }
            }
            // Declarations, comments, processing instructions: skipped.
            _ => {}
        }
        if stack.is_empty() {
            consumed = pos;
        }
    }
}

fn tail(consumed: usize) -> Option<(Option<Frame>, usize)> {
    (consumed > 0).then_some((None, consumed))
}

fn is_stream(name: &str) -> bool {
    name == "stream:stream"
}

impl Framer {
    /// The next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, XmlError> {
        loop {
            let before = self.buf.len();
            match self.step()? {
                Some(f) => return Ok(Some(f)),
                None if self.buf.len() < before => continue,
                None => return Ok(None),
            }
        }
    }
}

// Writing: the driver only sends a handful of stanzas, built as strings.

pub fn escape(s: &str) -> Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// The opening of a client stream to `domain`.
pub fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream to='{}' xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>",
        escape(domain)
    )
}

/// SASL PLAIN: `\0user\0password`, base64.
pub fn sasl_plain(user: &str, password: &str) -> String {
    let mut raw = Vec::with_capacity(user.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        base64(&raw)
    )
}

/// Resource binding and the (legacy, still advertised) session, in one write.
pub fn bind_and_session(resource: &str) -> String {
    format!(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>{}</resource></bind></iq>\
         <iq type='set' id='sess'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
        escape(resource)
    )
}

/// Presence: `show` is `None` for plain available, else `away`, `dnd`, ...
pub fn presence(show: Option<&str>) -> String {
    match show {
        None => "<presence/>".to_owned(),
        Some(s) => format!("<presence><show>{}</show></presence>", escape(s)),
    }
}

/// Joins a MUC room without its history.
pub fn muc_join(room_jid: &str, nick: &str) -> String {
    format!(
        "<presence to='{}/{}'><x xmlns='http://jabber.org/protocol/muc'>\
         <history maxstanzas='0'/></x></presence>",
        escape(room_jid),
        escape(nick)
    )
}

/// Accepts the default configuration of a room this user just created (an instant room).
pub fn muc_instant(room_jid: &str) -> String {
    format!(
        "<iq type='set' to='{}' id='inst'><query xmlns='http://jabber.org/protocol/muc#owner'>\
         <x xmlns='jabber:x:data' type='submit'/></query></iq>",
        escape(room_jid)
    )
}

/// A message with a body; `kind` is `chat` or `groupchat`.
pub fn message(out: &mut String, to: &str, kind: &str, id: &str, body: &str) {
    let _ = write!(
        out,
        "<message to='{}' type='{kind}' id='{}'><body>{}</body></message>",
        escape(to),
        escape(id),
        escape(body)
    );
}

/// A chat-state notification (XEP-0085), the XMPP counterpart of `typing`.
pub fn composing(out: &mut String, to: &str, kind: &str) {
    let _ = write!(
        out,
        "<message to='{}' type='{kind}'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        escape(to)
    );
}

pub const STREAM_END: &str = "<presence type='unavailable'/></stream:stream>";

/// `user@domain/resource` -> (`user@domain`, `resource`).
pub fn split_jid(jid: &str) -> (&str, &str) {
    jid.split_once('/').unwrap_or((jid, ""))
}

/// Standard base64 with padding (RFC 4648), for SASL.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What ejabberd 23.01 sent on a real stream (ids shortened), cut at arbitrary points.
    const STREAM: &str = "<?xml version='1.0'?><stream:stream id='1362' version='1.0' \
        xml:lang='en' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' \
        xmlns='jabber:client'><stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
        <mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>\
        <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\
        <iq type='result' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>lt-0@localhost/lt</jid></bind></iq>\
        <presence xml:lang='en' to='lt-0@localhost/lt' from='r1@conference.localhost/lt-0'>\
        <x xmlns='http://jabber.org/protocol/muc#user'><item jid='lt-0@localhost/lt' role='moderator' \
        affiliation='owner'/><status code='201'/><status code='110'/></x></presence>\n \
        <message xml:lang='en' to='lt-0@localhost/lt' from='lt-1@localhost/lt' type='chat' id='m2'>\
        <archived by='lt-0@localhost' id='1795616358190797' xmlns='urn:xmpp:mam:tmp'/>\
        <body>sblt|lt-1|1|1700000000000000|caf\u{e9} &amp; &lt;tea&gt; &#x263A;</body></message>\
        </stream:stream>";

    fn frames(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut f = Framer::default();
        let mut out = Vec::new();
        for c in chunks {
            f.push(c);
            while let Some(frame) = f.next_frame().unwrap() {
                out.push(frame);
            }
        }
        out
    }

    fn check(frames: &[Frame]) {
        assert_eq!(frames.len(), 7, "{frames:#?}");
        let Frame::StreamStart(s) = &frames[0] else { panic!("{:?}", frames[0]) };
        assert_eq!(s.attr("from"), Some("localhost"));
        let Frame::Stanza(features) = &frames[1] else { panic!() };
        assert_eq!(features.name, "stream:features");
        let mechs: Vec<&str> = features
            .child("mechanisms")
            .unwrap()
            .children
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(mechs, ["PLAIN", "SCRAM-SHA-1"]);
        assert_eq!(
            frames[2],
            Frame::Stanza(Element {
                name: "success".into(),
                attrs: vec![("xmlns".into(), "urn:ietf:params:xml:ns:xmpp-sasl".into())],
                ..Default::default()
            })
        );
        let Frame::Stanza(iq) = &frames[3] else { panic!() };
        assert_eq!(iq.find("jid").unwrap().text, "lt-0@localhost/lt");
        let Frame::Stanza(p) = &frames[4] else { panic!() };
        let codes: Vec<&str> = p
            .find("x")
            .unwrap()
            .children
            .iter()
            .filter(|c| c.name == "status")
            .filter_map(|c| c.attr("code"))
            .collect();
        assert_eq!(codes, ["201", "110"]);
        let Frame::Stanza(m) = &frames[5] else { panic!() };
        assert_eq!(m.attr("from"), Some("lt-1@localhost/lt"));
        assert_eq!(
            m.child("body").unwrap().text,
            "sblt|lt-1|1|1700000000000000|caf\u{e9} & <tea> \u{263A}"
        );
        assert_eq!(frames[6], Frame::StreamEnd);
    }

    #[test]
    fn a_real_stream_in_one_piece() {
        check(&frames(&[STREAM.as_bytes()]));
    }

    #[test]
    fn a_real_stream_byte_by_byte_and_in_odd_chunks() {
        let bytes = STREAM.as_bytes();
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        check(&frames(&singles));
        for size in [2, 3, 7, 64, 333] {
            let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
            check(&frames(&chunks));
        }
    }

    #[test]
    fn restart_gives_a_second_header_and_garbage_is_an_error() {
        let two = "<stream:stream from='a'><success/><?xml version='1.0'?><stream:stream from='b'>";
        let got = frames(&[two.as_bytes()]);
        assert_eq!(got.len(), 3);
        assert!(matches!(&got[2], Frame::StreamStart(s) if s.attr("from") == Some("b")));
        let mut f = Framer::default();
        f.push(b"<stream:stream><message><body>x</wrong></message>");
        assert!(matches!(f.next_frame(), Ok(Some(Frame::StreamStart(_)))));
        assert!(f.next_frame().is_err());
    }

    #[test]
    fn stanzas_written_are_escaped_and_parse_back() {
        let mut out = String::new();
        message(&mut out, "lt-1@localhost", "chat", "id-1", "a<b & 'c'");
        composing(&mut out, "room@conference.localhost", "groupchat");
        let got = frames(&[b"<stream:stream>", out.as_bytes()]);
        let Frame::Stanza(m) = &got[1] else { panic!() };
        assert_eq!(m.attr("to"), Some("lt-1@localhost"));
        assert_eq!(m.child("body").unwrap().text, "a<b & 'c'");
        let Frame::Stanza(c) = &got[2] else { panic!() };
        assert!(c.child("composing").is_some());
        let join = muc_join("r@conference.localhost", "lt-0");
        let got = frames(&[b"<stream:stream>", join.as_bytes()]);
        let Frame::Stanza(p) = &got[1] else { panic!() };
        assert_eq!(p.attr("to"), Some("r@conference.localhost/lt-0"));
        assert_eq!(p.find("history").unwrap().attr("maxstanzas"), Some("0"));
    }

    #[test]
    fn sasl_plain_is_base64_of_nul_user_nul_password() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(
            sasl_plain("lt-0", "loadtest-password"),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>\
             AGx0LTAAbG9hZHRlc3QtcGFzc3dvcmQ=</auth>"
        );
        assert_eq!(split_jid("a@b/c"), ("a@b", "c"));
        assert_eq!(split_jid("a@b"), ("a@b", ""));
    }
}
